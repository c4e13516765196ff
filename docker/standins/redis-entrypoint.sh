#!/bin/sh
# As the official image's entrypoint: a server started with options but no config file gets
# `--protected-mode no`, or Redis refuses every client from another container (no password
# is set; the network is the stack's own and the host port is published on 127.0.0.1 only).
set -eu
second="${2:-}"
if [ "${1:-}" = redis-server ] && [ "${second%.conf}" = "$second" ]; then
	shift
	set -- redis-server "$@" --protected-mode no
fi
exec "$@"
