#!/usr/bin/env bash
# make image: the otel-go-launcher base image, from $BIN_DIR/launch-linux-ARCH and
# $BIN_DIR/launch-runtime-linux-ARCH for each of PLATFORMS (linux/amd64 by default), with CONTAINER_TOOL (docker or podman; default:
# whichever has a working engine), tagged otel-go-launcher:latest and
# otel-go-launcher:$VERSION. Several platforms make a manifest list.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${VERSION:=$(git describe --tags --always --dirty 2>/dev/null || echo dev)}"
: "${REVISION:=$(git rev-parse HEAD 2>/dev/null || echo unknown)}"
: "${IMAGE:=otel-go-launcher}"
: "${PLATFORMS:=linux/$(go env GOARCH)}"
: "${CA_CERTS:=/etc/ssl/certs/ca-certificates.crt}"
: "${BIN_DIR:=bin}"
: "${LICENSES:=NOASSERTION}"
tool=${CONTAINER_TOOL:-$(scripts/container-tool.sh)}

[ -f "$CA_CERTS" ] || { echo "image: no CA certificates at $CA_CERTS (apt-get install ca-certificates, or set CA_CERTS)" >&2; exit 1; }
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
# One root filesystem per architecture; Dockerfile.base picks it by TARGETARCH.
for platform in ${PLATFORMS//,/ }; do
	arch=${platform#linux/}
	root=$stage/root-$arch
	mkdir -p "$root/usr/local/bin" "$root/etc/ssl/certs" "$root/tmp"
	for bin in launch launch-runtime; do
		[ -f "$BIN_DIR/$bin-linux-$arch" ] || { echo "image: no $BIN_DIR/$bin-linux-$arch (make image builds it)" >&2; exit 1; }
		install -m 0755 "$BIN_DIR/$bin-linux-$arch" "$root/usr/local/bin/$bin"
	done
	install -m 0644 "$CA_CERTS" "$root/etc/ssl/certs/ca-certificates.crt"
	chmod 1777 "$root/tmp"
	# Reproducible: fixed owner, order and times.
	tar -C "$root" --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -cf "$stage/rootfs-$arch.tar" .
done
cp Dockerfile.base "$stage/Dockerfile"
# No layer cache: the build is two steps, and a cached one would keep old labels.
args=(--no-cache --build-arg VERSION="$VERSION" --build-arg REVISION="$REVISION" --build-arg LICENSES="$LICENSES")
if [[ $PLATFORMS != *,* ]]; then
	$tool build --platform "$PLATFORMS" "${args[@]}" -t "$IMAGE:latest" -t "$IMAGE:$VERSION" "$stage"
elif [ "$tool" = docker ]; then # a multi-arch image index, with buildx
	docker buildx build --platform "$PLATFORMS" "${args[@]}" -t "$IMAGE:latest" -t "$IMAGE:$VERSION" "$stage"
else
	# One image per architecture. Podman 4.3 cannot list local storage holding a
	# manifest list, so the list is made where it is pushed (README: multi-arch).
	for platform in ${PLATFORMS//,/ }; do
		podman build --platform "$platform" "${args[@]}" -t "$IMAGE:$VERSION-${platform#linux/}" "$stage"
	done
	echo "image: $IMAGE:$VERSION-{${PLATFORMS//linux\//}} built; push a list of them with podman manifest create/add/push"
	exit 0
fi
echo "image: $IMAGE:latest and $IMAGE:$VERSION ($PLATFORMS) built with $tool"
