#!/usr/bin/env bash
# Builds the two services' static binaries into their build contexts (and the base
# image unless LAUNCHER_IMAGE names one): then `docker compose up --build` or
# `podman-compose up --build`.
set -euo pipefail
cd "$(dirname "$0")"
for s in frontend backend; do
	CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$s/$s" "./$s"
done
if [ -z "${LAUNCHER_IMAGE:-}" ]; then
	make -C ../.. image
fi
