#!/usr/bin/env bash
# One entry point for running and testing the service. `./manage.sh help` lists everything.
#   ./manage.sh local COMMAND            the stack as local processes (scripts/manage/local.sh)
#   ./manage.sh test [PYTEST ARGS]       the test suite (scripts/manage/common.sh)
#   ./manage.sh [PROFILE] COMMAND        Docker Compose, profile cpu|nvidia|amd|mac (scripts/manage/compose.sh)
set -euo pipefail

MANAGE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/manage/common.sh
source "$MANAGE_ROOT/scripts/manage/common.sh"
# shellcheck source=scripts/manage/local.sh
source "$MANAGE_ROOT/scripts/manage/local.sh"

COMPOSE_SCRIPT="$MANAGE_ROOT/scripts/manage/compose.sh"
HARDWARE_PROFILES=(cpu nvidia amd mac)

usage() {
	cat <<'EOF'
Usage: ./manage.sh COMMAND [ARGS...]

  ./manage.sh help                 this help
  ./manage.sh test [PYTEST ARGS]   install what the tests need (venv, requirements, Debian packages),
                                   then run pytest, e.g. ./manage.sh test -m "not pipeline" -x
  ./manage.sh local COMMAND        run the stack as local processes, no Docker (see below)
  ./manage.sh [PROFILE] COMMAND    run the stack with Docker Compose; PROFILE is one of
                                   cpu (default), nvidia, amd, mac

EOF
	local_usage
	echo
	if [[ -f "$COMPOSE_SCRIPT" ]]; then
		# shellcheck source=/dev/null
		source "$COMPOSE_SCRIPT"
		compose_usage
	else
		echo "Docker profiles: not available yet (scripts/manage/compose.sh is missing)."
	fi
}

compose_dispatch() {
	[[ -f "$COMPOSE_SCRIPT" ]] || die "Docker profiles are not available: scripts/manage/compose.sh is missing (try ./manage.sh local $*)"
	# shellcheck source=/dev/null
	source "$COMPOSE_SCRIPT"
	compose_main "$@"
}

main() {
	local cmd="${1:-help}" profile
	[[ $# -gt 0 ]] && shift
	case "$cmd" in
	help | -h | --help) usage ;;
	local) local_main "$@" ;;
	test) run_tests "$@" ;;
	-*) die "unknown option '$cmd' (see ./manage.sh help)" ;;
	*)
		for profile in "${HARDWARE_PROFILES[@]}"; do
			if [[ "$cmd" == "$profile" ]]; then
				[[ $# -gt 0 ]] || die "missing a command after the profile '$profile' (see ./manage.sh help)"
				compose_dispatch "$profile" "$@"
				return
			fi
		done
		# "./manage.sh gpu start": a word before a command is a profile, and this one is unknown.
		if [[ $# -gt 0 && -f "$COMPOSE_SCRIPT" ]]; then
			# shellcheck source=/dev/null
			source "$COMPOSE_SCRIPT"
			local known
			for known in "${COMPOSE_COMMANDS[@]}"; do
				[[ "$cmd" == "$known" ]] && { compose_dispatch cpu "$cmd" "$@"; return; }
			done
			die "unknown profile '$cmd' (one of: local ${HARDWARE_PROFILES[*]})"
		fi
		compose_dispatch cpu "$cmd" "$@"
		;;
	esac
}

main "$@"
