#!/usr/bin/env bash
# Local stand-ins for the base images, for machines that cannot pull from a registry
# (air-gapped sites, this project's CI). Each is built only when missing:
#
#   local/debian:bookworm            debootstrap --variant=minbase (Debian's archive is reachable)
#   local/python:3.11-slim-bookworm  stand-in for python:3.11-slim-bookworm  (PYTHON_IMAGE)
#   local/redis:7                    stand-in for redis:7.4-alpine           (REDIS_IMAGE)
#   local/seaweedfs:s3               stand-in for MinIO: SeaweedFS serving S3 (MINIO_IMAGE)
#
# docker/compose.standins.yml points Compose at them. Usage:
#   scripts/docker/standins.sh [--rebuild]
# Settings: DOCKER_CLI (default docker), EXTRA_CA_CERTS (a PEM file of extra CA certificates
# for pip behind an HTTPS-intercepting proxy), DEBIAN_MIRROR (default http://deb.debian.org/debian).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DOCKER_CLI="${DOCKER_CLI:-docker}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
REBUILD=false
[[ "${1:-}" == --rebuild ]] && REBUILD=true

BASE=local/debian:bookworm
PYTHON=local/python:3.11-slim-bookworm
REDIS=local/redis:7
SEAWEEDFS=local/seaweedfs:s3

info() { printf 'standins: %s\n' "$*" >&2; }
die() {
	printf 'error: %s\n' "$*" >&2
	exit 1
}

have_image() { ! $REBUILD && "$DOCKER_CLI" image inspect "$1" >/dev/null 2>&1; }

build() {
	local tag="$1" dockerfile="$2"
	shift 2
	local secret=()
	if [[ -n "${EXTRA_CA_CERTS:-}" ]]; then
		[[ -f "$EXTRA_CA_CERTS" ]] || die "EXTRA_CA_CERTS=$EXTRA_CA_CERTS: no such file"
		secret=(--secret "id=extra_ca_certs,src=$EXTRA_CA_CERTS")
	fi
	info "building $tag ($dockerfile)"
	DOCKER_BUILDKIT=1 "$DOCKER_CLI" build --quiet "${secret[@]}" "$@" -t "$tag" -f "$ROOT/$dockerfile" "$ROOT" >/dev/null
}

base() {
	have_image "$BASE" && return 0
	[[ $EUID -eq 0 ]] || die "debootstrap needs root (or build $BASE some other way)"
	if ! command -v debootstrap >/dev/null 2>&1; then
		command -v apt-get >/dev/null 2>&1 || die "debootstrap is missing and there is no apt-get to install it"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
	fi
	local dir
	dir="$(mktemp -d)"
	info "debootstrap bookworm from $MIRROR (about a minute)"
	debootstrap --variant=minbase bookworm "$dir/rootfs" "$MIRROR" >"$dir/log" 2>&1 ||
		die "debootstrap failed: $(tail -n 5 "$dir/log")"
	rm -rf "$dir/rootfs/var/lib/apt/lists/"* "$dir/rootfs/var/cache/apt/"*.bin \
		"$dir/rootfs/usr/share/doc/"* "$dir/rootfs/usr/share/man/"* "$dir/rootfs/usr/share/locale/"*
	tar -C "$dir/rootfs" -c . | "$DOCKER_CLI" import \
		--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
		--change 'CMD ["bash"]' - "$BASE" >/dev/null
	rm -rf "$dir"
	info "imported $BASE"
}

main() {
	"$DOCKER_CLI" info >/dev/null 2>&1 || die "cannot reach a Docker engine with $DOCKER_CLI (scripts/docker/engine.sh starts one)"
	base
	have_image "$PYTHON" || build "$PYTHON" docker/standins/python.Dockerfile --build-arg "BASE_IMAGE=$BASE"
	have_image "$REDIS" || build "$REDIS" docker/standins/redis.Dockerfile --build-arg "BASE_IMAGE=$BASE"
	have_image "$SEAWEEDFS" || build "$SEAWEEDFS" docker/standins/seaweedfs.Dockerfile --build-arg "PYTHON_IMAGE=$PYTHON"
	info "ready: $BASE $PYTHON $REDIS $SEAWEEDFS"
}

main
