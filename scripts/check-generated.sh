#!/usr/bin/env bash
# The committed BPF objects (bpf2go output) must be what the C sources compile to:
# regenerate them and fail if anything changed. Needs clang; under CI=true its absence
# is a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v clang >/dev/null 2>&1; then
	echo "check-generated: clang not found: cannot check the BPF objects" >&2
	[ "${CI:-}" = true ] && exit 1
	exit 0
fi
go generate ./probes/...
changed=$(git status --porcelain -- '*_bpfel.o' '*_bpfel.go')
if [ -n "$changed" ]; then
	echo "check-generated: the BPF objects do not match their C sources; commit the regenerated files:" >&2
	echo "$changed" >&2
	exit 1
fi
