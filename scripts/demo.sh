#!/usr/bin/env bash
# make demo: run an example Go HTTP service (stripped) under the launcher with spans going to a
# small OTLP receiver that prints them, send requests (one carrying a W3C traceparent),
# stop the service the way `docker stop` does, and show what arrived. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."

app=127.0.0.1:18080
otlp=127.0.0.1:14317
# Built as production builds are: no symbols, no DWARF.
go build -trimpath -ldflags='-s -w' -o bin/hello-service ./examples/hello
go build -o bin/otlp-printer ./examples/otlp-printer
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "the service is built -trimpath -ldflags='-s -w'; bin/launch inspect bin/hello-service:"
bin/launch inspect bin/hello-service
spans=$(mktemp)
cleanup() {
	kill "${printer:-}" "${launcher:-}" 2>/dev/null || true
	rm -f "$spans"
	[ -z "${cgroup:-}" ] || rmdir "$cgroup" 2>/dev/null || true
}
trap cleanup EXIT

bin/otlp-printer -addr "$otlp" >"$spans" &
printer=$!

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

say "start: OTEL_EXPORTER_OTLP_ENDPOINT=http://$otlp bin/launch -- bin/hello-service -addr $app"
OTEL_EXPORTER_OTLP_ENDPOINT=http://$otlp OTEL_BSP_SCHEDULE_DELAY=100 \
	"${run_in[@]}" bin/launch -- bin/hello-service -addr "$app" &
launcher=$!
for _ in $(seq 200); do curl -fs "http://$app/hello/first" >/dev/null 2>&1 && break; sleep 0.01; done

say "process tree: the app is the launcher's child, in its own process group, without the launcher's capabilities"
app_pid=$(awk '{print $1}' "/proc/$launcher/task/$launcher/children")
ps -o pid,ppid,pgid,comm -p "$launcher","$app_pid"
grep -E '^Cap(Eff|Bnd)' "/proc/$app_pid/status" | sed 's/^/app /'

say "requests"
curl -fsS "http://$app/hello/gopher"
curl -fsS -H 'traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' -H 'User-Agent: demo/1.0' "http://$app/hello/otel"
curl -sS -o /dev/null -w 'GET /nope -> %{http_code}\n' "http://$app/nope"
say "a call out: /greet asks /hello over HTTP; the kernel adds the traceparent to the outgoing request"
curl -fsS "http://$app/greet/kernel"

say "stop: SIGTERM to the launcher, as docker stop does; it relays it, the app exits, spans are flushed"
kill -TERM "$launcher"
set +e
wait "$launcher"
code=$?
set -e
launcher=
echo "launcher exit code: $code (the app's own)"

say "spans received over OTLP/gRPC (the first request included)"
sleep 0.3
cat "$spans"
