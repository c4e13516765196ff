#!/usr/bin/env bash
# A private Docker engine for this project, for machines where none is running (CI, a
# sandbox). It is Debian's docker.io daemon with its own data root, exec root and socket, so
# it never touches a system engine and keeps its build cache between runs.
#
#   scripts/docker/engine.sh start    start it (installs docker.io when missing; root only)
#   scripts/docker/engine.sh stop     stop it (by its own pid)
#   scripts/docker/engine.sh env      print the variables that point a shell at it
#
# Settings: DANCE_DOCKER_DIR (default /var/lib/dance-docker) holds data, socket, pid and log.
#
# Two docker clients may be installed: a newer one without buildx earlier on PATH and
# the one docker.io ships (/usr/bin/docker). Only the second builds with BuildKit here, so
# `env` names it in DOCKER_CLI, and callers use "$DOCKER_CLI" instead of `docker`.
set -euo pipefail

DIR="${DANCE_DOCKER_DIR:-/var/lib/dance-docker}"
SOCKET="$DIR/docker.sock"
PIDFILE="$DIR/dockerd.pid"
LOG="$DIR/dockerd.log"
CLI="${DOCKER_CLI:-/usr/bin/docker}"

die() {
	printf 'error: %s\n' "$*" >&2
	exit 1
}

running() { [[ -f "$PIDFILE" ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

start() {
	if running && DOCKER_HOST="unix://$SOCKET" "$CLI" info >/dev/null 2>&1; then
		return 0
	fi
	[[ $EUID -eq 0 ]] || die "starting a Docker engine needs root (or start your own and set DOCKER_HOST)"
	if ! command -v dockerd >/dev/null 2>&1 || [[ ! -x "$CLI" ]]; then
		command -v apt-get >/dev/null 2>&1 || die "no dockerd and no apt-get: install Docker Engine"
		printf 'installing Debian packages: docker.io\n' >&2
		DEBIAN_FRONTEND=noninteractive apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io >/dev/null
	fi
	mkdir -p "$DIR/data" "$DIR/exec"
	# A stale pid file or socket from a killed run would stop dockerd from starting.
	rm -f "$PIDFILE" "$SOCKET"
	printf 'starting dockerd (data root %s, log %s)\n' "$DIR/data" "$LOG" >&2
	nohup dockerd --data-root "$DIR/data" --exec-root "$DIR/exec" --pidfile "$PIDFILE" \
		--host "unix://$SOCKET" >>"$LOG" 2>&1 </dev/null &
	local deadline=$((SECONDS + 60))
	until DOCKER_HOST="unix://$SOCKET" "$CLI" info >/dev/null 2>&1; do
		((SECONDS < deadline)) || die "dockerd did not answer in 60 s; see $LOG"
		sleep 1
	done
}

stop() {
	running || return 0
	local pid waited=0
	pid="$(cat "$PIDFILE")"
	kill -TERM "$pid"
	while kill -0 "$pid" 2>/dev/null && ((waited < 30)); do
		sleep 1
		waited=$((waited + 1))
	done
	kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
	rm -f "$PIDFILE"
}

case "${1:-}" in
start) start ;;
stop) stop ;;
env)
	printf 'export DOCKER_HOST=unix://%s\n' "$SOCKET"
	printf 'export DOCKER_CLI=%s\n' "$CLI"
	;;
*) die "usage: $0 start|stop|env" ;;
esac
