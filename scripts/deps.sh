#!/usr/bin/env bash
# Installs what the tests, the demo and the benchmarks need. As root on Debian it installs missing
# packages (idempotent, quiet); elsewhere it says what is missing. Under CI=true
# anything missing is an error.
set -euo pipefail

# A command or file, and the Debian package that provides it.
needs=(
	"unshare util-linux" "setpriv util-linux" "bash bash" "curl curl" "ps procps" "gcc gcc"
	"clang clang" "llvm-strip llvm" "/usr/include/bpf/bpf_helpers.h libbpf-dev"
	"/usr/include/asm-generic/types.h linux-libc-dev" "/usr/bin/time time"
	"podman podman" "runc runc" "podman-compose podman-compose"
	"/usr/lib/cni/dnsname golang-github-containernetworking-plugin-dnsname"
	"containerd containerd" "ctr containerd"
	"pg_ctlcluster postgresql" "redis-server redis-server" "/usr/sbin/mariadbd mariadb-server-core"
)

missing=()
for n in "${needs[@]}"; do
	what=${n% *} pkg=${n#* }
	if [[ $what == /* ]]; then [ -e "$what" ] && continue; else command -v "$what" >/dev/null 2>&1 && continue; fi
	missing+=("$pkg")
done

if [ ${#missing[@]} -gt 0 ]; then
	mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
		echo "deps: installing ${missing[*]}"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq >/dev/null
		apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	else
		echo "deps: missing Debian packages: ${missing[*]} (install them as root)" >&2
		[ "${CI:-}" = true ] && exit 1
	fi
fi

if [ "$(id -u)" != 0 ]; then
	echo "deps: not root: tests that need root (PID namespaces, capabilities, BPF) will skip" >&2
	[ "${CI:-}" = true ] && { echo "deps: CI=true needs root" >&2; exit 1; }
fi

go mod download

# crane, go-containerregistry's command (a registry process for launch wrap's tests),
# from the module proxy at the version go.mod uses.
if ! command -v crane >/dev/null 2>&1; then
	if [ "$(id -u)" = 0 ]; then
		echo "deps: installing crane"
		GOBIN=/usr/local/bin go install "github.com/google/go-containerregistry/cmd/crane@$(go list -m -f '{{.Version}}' github.com/google/go-containerregistry)"
	else
		echo "deps: crane missing: go install github.com/google/go-containerregistry/cmd/crane" >&2
		[ "${CI:-}" = true ] && exit 1
	fi
fi
