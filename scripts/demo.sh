#!/usr/bin/env bash
# make demo: run an example Go HTTP service under the launcher, talk to it, stop it
# the way `docker stop` does, and show what the launcher did.
set -euo pipefail
cd "$(dirname "$0")/.."

addr=127.0.0.1:18080
go build -o bin/hello-service ./examples/hello
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "start: bin/launch -- bin/hello-service -addr $addr"
bin/launch -- bin/hello-service -addr "$addr" &
launcher=$!
for _ in $(seq 100); do curl -fs "http://$addr/hello/probe" >/dev/null 2>&1 && break; sleep 0.05; done

say "process tree: the app runs as the launcher's child, in its own process group"
app=$(cat "/proc/$launcher/task/$launcher/children" | awk '{print $1}')
ps -o pid,ppid,pgid,comm -p "$launcher","$app"
grep -E '^Cap(Eff|Bnd)' "/proc/$app/status" | sed 's/^/app /'
echo "(the app holds none of CAP_SYS_ADMIN, CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN, CAP_SYS_PTRACE, CAP_SYS_RESOURCE)"

say "requests"
for name in gopher otel launcher; do curl -fsS "http://$addr/hello/$name"; done

say "stop: SIGTERM to the launcher, as docker stop does; it relays it to the app"
kill -TERM "$launcher"
set +e
wait "$launcher"
code=$?
set -e
echo "launcher exit code: $code (the app's own)"

say "tracing"
echo "Spans need the eBPF pipeline (not in this build): the launcher said so in one line above and ran the app anyway."
