#!/usr/bin/env bash
# Prints the container tool to use: docker if its engine answers, else podman.
if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
	echo docker
elif command -v podman >/dev/null 2>&1; then
	echo podman
else
	echo "no container tool: install docker or podman (apt-get install podman)" >&2
	exit 1
fi
