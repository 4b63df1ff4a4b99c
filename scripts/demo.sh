#!/usr/bin/env bash
# make demo: run an example Go HTTP service (stripped) under the launcher with spans and
# metrics going to a small OTLP receiver (examples/otlp-printer), send requests (one
# carrying a W3C traceparent), stop the service the way `docker stop` does, and show what
# arrived: each trace as a tree, and a table of requests per route. Needs root.
#
# DEMO_APP, DEMO_OTLP_GRPC and DEMO_OTLP_HTTP move its addresses and DEMO_BIN the
# directory it builds into (e2e's TestDemo picks free ports and a directory of its own);
# LAUNCH names a launcher already built (else bin/launch is built here).
set -euo pipefail
cd "$(dirname "$0")/.."

app=${DEMO_APP:-127.0.0.1:18080}
otlp=${DEMO_OTLP_GRPC:-127.0.0.1:14317}
otlp_http=${DEMO_OTLP_HTTP:-127.0.0.1:14318}
bin=${DEMO_BIN:-bin}
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
step() { printf '%s\n' "$*"; }

if [ -z "${LAUNCH:-}" ]; then
	step "building the launcher, bin/launch (first run: about 2 minutes)…"
	make -s build
	LAUNCH=bin/launch
fi
step "building the example service (-trimpath -ldflags='-s -w') and the OTLP receiver…"
# Built as production builds are: no symbols, no DWARF.
go build -trimpath -ldflags='-s -w' -o "$bin/hello-service" ./examples/hello
go build -o "$bin/otlp-printer" ./examples/otlp-printer
go build -o "$bin/capnames" ./examples/capnames

say "the service is built -trimpath -ldflags='-s -w'; launch inspect $bin/hello-service:"
"$LAUNCH" inspect "$bin/hello-service"
spans=$(mktemp)
cleanup() {
	kill "${printer:-}" "${launcher:-}" 2>/dev/null || true
	rm -f "$spans"
	[ -z "${cgroup:-}" ] || rmdir "$cgroup" 2>/dev/null || true
}
trap cleanup EXIT

# It prints what it received when it is stopped, after the launcher has exited.
"$bin/otlp-printer" -grpc "$otlp" -http "$otlp_http" >"$spans" &
printer=$!
# Listening before the launcher's first export (its OTLP/HTTP side answers a GET 405).
for _ in $(seq 300); do
	curl -s -o /dev/null "http://$otlp_http/v1/traces" && break
	kill -0 "$printer" 2>/dev/null || { echo "demo: the OTLP receiver did not start: see its message above" >&2; exit 1; }
	sleep 0.01
done

# The launcher attaches its socket programs at the app's own cgroup, never the host's root
# (they would run on every process's connections): a shell in the root cgroup runs it in
# one of its own, as a container or a systemd service is.
run_in=()
if [ "$(sed -n 's/^0:://p' /proc/self/cgroup)" = / ]; then
	mnt=$(awk '{for (i = 1; i < NF; i++) if ($i == "-" && $(i+1) == "cgroup2" && $4 == "/") {print $5; exit}}' /proc/self/mountinfo)
	if [ -n "$mnt" ] && mkdir -p "$mnt/otel-go-launcher-demo"; then
		cgroup=$mnt/otel-go-launcher-demo
		run_in=(sh -c 'echo $$ > "$0/cgroup.procs" && exec "$@"' "$cgroup")
	fi
fi

say "start: OTEL_EXPORTER_OTLP_ENDPOINT=http://$otlp launch -- $bin/hello-service -addr $app"
OTEL_EXPORTER_OTLP_ENDPOINT=http://$otlp OTEL_BSP_SCHEDULE_DELAY=100 \
	"${run_in[@]}" "$LAUNCH" -- "$bin/hello-service" -addr "$app" &
launcher=$!
for _ in $(seq 200); do curl -fs "http://$app/hello/first" >/dev/null 2>&1 && break; sleep 0.01; done

say "process tree: the app is the launcher's child, in its own process group, without the launcher's capabilities"
app_pid=$(awk '{print $1}' "/proc/$launcher/task/$launcher/children")
ps -o pid,ppid,pgid,comm -p "$launcher","$app_pid"
"$bin/capnames" "$launcher" "$app_pid"

say "requests"
curl -fsS "http://$app/hello/gopher"
curl -fsS -H 'traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' -H 'User-Agent: demo/1.0' "http://$app/hello/otel"
curl -sS -o /dev/null -w 'GET /nope -> %{http_code}\n' "http://$app/nope"
say "a call out: /greet asks /hello over HTTP; the kernel adds the traceparent to the outgoing request"
curl -fsS "http://$app/greet/kernel"

say "stop: SIGTERM to the launcher, as docker stop does; it relays it, the app exits, spans and metrics are flushed"
kill -TERM "$launcher"
set +e
wait "$launcher"
code=$?
set -e
launcher=
echo "launcher exit code: $code (the app's own)"

# The launcher has exported everything before exiting: the receiver, stopped now, prints
# all of it.
kill -TERM "$printer"
wait "$printer"
printer=
say "received over OTLP (the first request included): each trace as a tree, a bar for each span's time in its trace"
cat "$spans"
