#!/usr/bin/env bash
# Installs what the tests and the demo need. As root on Debian it installs missing
# packages (idempotent, quiet); elsewhere it says what is missing. Under CI=true
# anything missing is an error.
set -euo pipefail

# command -> Debian package
declare -A needs=(
	[unshare]=util-linux [setpriv]=util-linux [bash]=bash [curl]=curl [gcc]=gcc
)

missing_pkgs=()
for cmd in "${!needs[@]}"; do
	command -v "$cmd" >/dev/null 2>&1 || missing_pkgs+=("${needs[$cmd]}")
done

if [ ${#missing_pkgs[@]} -gt 0 ]; then
	mapfile -t missing_pkgs < <(printf '%s\n' "${missing_pkgs[@]}" | sort -u)
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
		echo "deps: installing ${missing_pkgs[*]}"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq >/dev/null
		apt-get install -y -qq --no-install-recommends "${missing_pkgs[@]}" >/dev/null
	else
		echo "deps: missing Debian packages: ${missing_pkgs[*]} (install them as root)" >&2
		[ "${CI:-}" = true ] && exit 1
	fi
fi

if [ "$(id -u)" != 0 ]; then
	echo "deps: not root: tests that need root (PID namespaces, capabilities, --user) will skip" >&2
	[ "${CI:-}" = true ] && { echo "deps: CI=true needs root" >&2; exit 1; }
fi

go mod download
