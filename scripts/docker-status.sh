#!/usr/bin/env bash
# Says whether docker can build an image here: exit 0 when it can, else exit 1 and one line saying why.
# make image and make dist use it; nothing here installs or starts docker.
if ! command -v docker >/dev/null; then
	echo "docker is not installed, so no image was built (install docker and run 'make image')"
	exit 1
fi
if ! out=$(docker info 2>&1); then
	echo "docker is installed but its daemon does not answer ($(grep -m1 -iE 'cannot connect|error' <<<"$out")), so no image was built (start dockerd and run 'make image')"
	exit 1
fi
echo "docker $(docker version --format '{{.Server.Version}}' 2>/dev/null)"
