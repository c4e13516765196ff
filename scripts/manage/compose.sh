# shellcheck shell=bash
# The Docker Compose commands of manage.sh: `./manage.sh PROFILE COMMAND [ARGS]`.
# Sourced after common.sh (info, warn, die, MANAGE_ROOT, VENV_DIR, ensure_venv),
# never run. Defines compose_usage and compose_main; helpers start with _compose_.
#
# Profiles: cpu (default), nvidia, amd run every service and the worker in
# containers; mac runs the services in containers and the worker natively on
# the host, because containers on macOS cannot reach the Apple GPU (MPS).

HARDWARE_PROFILES=(cpu nvidia amd mac)
COMPOSE_COMMANDS=(init start stop restart status logs build overview keys shell-backend shell-worker test-upload clean minio-console rq-dashboard)

compose_usage() {
	cat <<'EOF'
Docker commands: ./manage.sh [PROFILE] [-f FILE]... COMMAND [ARGS]
  PROFILE   cpu (default) | nvidia | amd | mac
            mac: the services run in Docker, the worker runs natively on the Mac
            with the GPU (MPS) from the host's venv; Docker on macOS has no GPU.
  -f FILE   also use this compose file (an override: registry mirror, your S3, stand-in
            images), after docker-compose.yml or COMPOSE_FILE's files; before or after
            COMMAND (after logs, -f means follow: use --file there). Also --file FILE.

  init [--force]        write .env from .env.example with fresh random secrets (mode 600);
                        refuses to replace an existing file unless --force (keeps a backup)
  start [--no-build] [--wait]
                        build the images, start the stack and wait for the API.
                        With ENVIRONMENT=production (the default) it refuses, naming
                        them, while a secret is empty, CHANGE-ME or a default, or
                        while API_AUTH=open.
                        --no-build: run the images already here (built elsewhere,
                        pulled or loaded); refuses, naming them, if one is missing.
                        --wait: also wait until every service is healthy; on failure
                        print ps and the failing services' logs
  stop                  stop the containers (data volumes are kept)
  restart [--no-build] [--wait]
                        stop, then start
  status                containers and their health (and the native mac worker)
  logs [SERVICE]        follow the logs (SERVICE: backend, worker, minio, redis...)
  build [--no-cache] [SERVICE...]
                        build the images only (SERVICE: backend, worker...)
  overview [--json] [--failures N]
                        the queues, workers, jobs by status and the last failures,
                        read inside the backend container
  keys create NAME [--admin] [--json] | keys list [--json] | keys revoke KEY_ID
                        the API keys (python -m shared.apikeys in the backend
                        container); create prints the new key once
  shell-backend         a shell inside the backend container
  shell-worker          a shell inside the worker container
  test-upload FILE [--profile fast|accurate] [--key KEY]
              [--reference JOB_ID [--mirror auto|on|off]]
                        upload a video to POST /analyze, follow its progress,
                        print the result links and the tempo; sends the API key
                        KEY (default: API_KEY from the environment or the settings
                        file). --reference: compare it with that succeeded
                        analysis, follow the comparison too, print its links and
                        score (exit 1 if a job fails)
  clean [--yes|-y]      remove containers, networks and volumes (ALL stored data)
  minio-console         open the MinIO console (http://localhost:9001)
  rq-dashboard          open rq-dashboard (http://127.0.0.1:9181, basic auth)

Settings come from .env (./manage.sh init writes it with fresh secrets); MANAGE_ENV_FILE
names another file. manage.sh also reads, from the environment or that file:
  COMPOSE_FILE          compose files replacing docker-compose.yml, ':'-separated
                        (COMPOSE_PATH_SEPARATOR), relative to the repository
  COMPOSE_NO_BUILD      true: start as with --no-build
  COMPOSE_WAIT_SECONDS  how long start waits for the stack (180)
  DOCKER_CLI            the docker client to run (docker), e.g. /usr/bin/docker

Examples:
  ./manage.sh init && ./manage.sh cpu start
  ./manage.sh cpu keys create studio-app       # prints the key once
  ./manage.sh cpu start -f docker/compose.standins.yml --wait
  ./manage.sh cpu build && ./manage.sh cpu start --no-build
  ./manage.sh nvidia logs worker
  ./manage.sh amd status
  ./manage.sh cpu overview
  ./manage.sh mac start          # services in Docker + native MPS worker
  ./manage.sh cpu test-upload ~/Videos/dance.mp4
  ./manage.sh cpu test-upload ~/Videos/try.mp4 --reference JOB_ID --mirror on
  ./manage.sh cpu clean --yes
EOF
}

# The settings file; MANAGE_ENV_FILE picks another one (tests, a second stack).
_compose_envfile() { printf '%s\n' "${MANAGE_ENV_FILE:-$MANAGE_ROOT/.env}"; }
# The native mac worker's pid file and log (COMPOSE_MAC_DIR moves them).
_compose_local_dir() { printf '%s\n' "${COMPOSE_MAC_DIR:-$MANAGE_ROOT/.local/docker-mac}"; }

# A setting as Compose sees it: the process environment first, then .env, then DEFAULT.
_compose_setting() {
	local name="$1" default="${2:-}" line value="" found=false envfile
	if [[ -n "${!name:-}" ]]; then
		printf '%s\n' "${!name}"
		return 0
	fi
	envfile="$(_compose_envfile)"
	if [[ -f "$envfile" ]]; then
		while IFS= read -r line || [[ -n "$line" ]]; do
			line="${line#"${line%%[![:space:]]*}"}"
			line="${line#export }"
			if [[ "$line" == "$name="* ]]; then
				value="${line#"$name="}"
				found=true
			fi
		done <"$envfile"
	fi
	if $found; then
		value="${value%$'\r'}"
		if [[ "$value" =~ ^\"(.*)\"$ || "$value" =~ ^\'(.*)\'$ ]]; then
			value="${BASH_REMATCH[1]}"
		fi
	fi
	if [[ -n "$value" ]]; then printf '%s\n' "$value"; else printf '%s\n' "$default"; fi
}

# The docker client: DOCKER_CLI (environment or .env) names another one, e.g. /usr/bin/docker
# when the first docker on PATH lacks what the build needs. Every docker call goes through
# _compose_docker, so pointing DOCKER_CLI elsewhere moves them all.
_compose_cli() { _compose_setting DOCKER_CLI docker; }
_compose_docker() {
	local cli
	cli="$(_compose_cli)"
	"$cli" "$@"
}

_compose_need_docker() {
	local cli
	cli="$(_compose_cli)"
	if ! command -v "$cli" >/dev/null 2>&1; then
		[[ "$cli" == docker ]] &&
			die "docker not found on PATH: install Docker Engine (Linux) or Docker Desktop (macOS)"
		die "DOCKER_CLI=$cli: no such program (set DOCKER_CLI to a docker client, or unset it to use docker from PATH)"
	fi
	_compose_docker compose version >/dev/null 2>&1 ||
		die "the Docker Compose plugin is missing ('$cli compose' fails): install docker-compose-plugin"
	_compose_docker info >/dev/null 2>&1 ||
		die "cannot reach the Docker daemon: start Docker, or check your access to its socket"
}

# The compose files of this run, absolute paths, set by _compose_resolve_files.
_COMPOSE_FILES=()

# Choose the compose files the way docker compose does: COMPOSE_FILE (environment or .env), a
# list split on COMPOSE_PATH_SEPARATOR (default ':') with relative paths from the repository,
# replaces docker-compose.yml; then each FILE given with -f/--file (relative to the current
# directory) is added after them, as docker compose merges them: later files override.
_compose_resolve_files() {
	local list sep entry rest entries=()
	_COMPOSE_FILES=()
	list="$(_compose_setting COMPOSE_FILE)"
	if [[ -n "$list" ]]; then
		sep="$(_compose_setting COMPOSE_PATH_SEPARATOR :)"
		rest="$list"
		while [[ "$rest" == *"$sep"* ]]; do
			entries+=("${rest%%"$sep"*}")
			rest="${rest#*"$sep"}"
		done
		entries+=("$rest")
		for entry in "${entries[@]}"; do
			[[ -n "$entry" ]] || continue
			[[ "$entry" == /* ]] || entry="$MANAGE_ROOT/$entry"
			[[ -f "$entry" ]] || die "compose file not found: $entry (from COMPOSE_FILE=$list)"
			_COMPOSE_FILES+=("$entry")
		done
		[[ ${#_COMPOSE_FILES[@]} -gt 0 ]] || die "COMPOSE_FILE=$list names no file"
	else
		[[ -f "$MANAGE_ROOT/docker-compose.yml" ]] || die "docker-compose.yml not found in $MANAGE_ROOT"
		_COMPOSE_FILES=("$MANAGE_ROOT/docker-compose.yml")
	fi
	for entry in "$@"; do
		[[ -n "$entry" ]] || die "-f/--file needs a compose file"
		if [[ "$entry" == /* ]]; then rest="$entry"; else rest="$PWD/$entry"; fi
		[[ -f "$rest" ]] || die "compose file not found: $entry"
		_COMPOSE_FILES+=("$rest")
	done
}

_compose_need_envfile() {
	local profile="${1:-cpu}"
	[[ -f "$(_compose_envfile)" ]] ||
		die "$(_compose_envfile) not found: run ./manage.sh $profile init (writes it from .env.example with fresh secrets)"
}

# --- secrets ----------------------------------------------------------------------

# Values a production stack refuses for a secret: the placeholders of .env.example and the servers'
# well-known defaults. The same rule as is_placeholder_secret in shared/settings.py, which every
# container applies at start (tests/docker/test_manage_compose.py keeps the two lists equal).
_COMPOSE_DEFAULT_SECRETS=(minioadmin changethis change-me changeme admin password secret)
# The secrets of the settings file: required in production (METRICS_TOKEN only when set).
_COMPOSE_SECRETS=(MINIO_ROOT_PASSWORD RQ_DASHBOARD_PASSWORD SECRET_KEY METRICS_TOKEN)

# Why VALUE is not a secret anyone chose ("" when it is one).
_compose_placeholder_reason() {
	local value="$1" lower known
	value="${value#"${value%%[![:space:]]*}"}"
	value="${value%"${value##*[![:space:]]}"}"
	lower="$(printf '%s' "$value" | tr '[:upper:]' '[:lower:]')"
	if [[ -z "$lower" ]]; then
		printf 'empty\n'
	elif [[ "$lower" == *change-me* || "$lower" == *changeme* ]]; then
		printf 'a CHANGE-ME placeholder\n'
	else
		for known in "${_COMPOSE_DEFAULT_SECRETS[@]}"; do
			[[ "$lower" == "$known" ]] && printf 'a well-known default\n' && return 0
		done
	fi
	return 0
}

_compose_is_loopback() {
	case "$1" in
	127.0.0.1 | localhost | ::1 | "[::1]") return 0 ;;
	*) return 1 ;;
	esac
}

# Before anything is built, stopped or started. ENVIRONMENT=production (the default): every
# secret is one someone chose and the API needs keys, or nothing starts and every offending
# variable is named (the containers would refuse them too, but one at a time and after the
# build). local: the same findings are warnings, and an open API only on a loopback address.
_compose_check_secrets() {
	local profile="$1" environment auth name value reason bind problems=()
	environment="$(_compose_setting ENVIRONMENT production)"
	auth="$(_compose_setting API_AUTH keys)"
	[[ "$environment" == production || "$environment" == local ]] ||
		die "ENVIRONMENT must be production or local, not '$environment'"
	[[ "$auth" == keys || "$auth" == open ]] || die "API_AUTH must be keys or open, not '$auth'"
	for name in "${_COMPOSE_SECRETS[@]}"; do
		value="$(_compose_setting "$name")"
		[[ "$name" == METRICS_TOKEN && -z "$value" ]] && continue # optional: admin keys only
		reason="$(_compose_placeholder_reason "$value")"
		if [[ -n "$reason" ]]; then
			problems+=("$name is $reason")
		elif [[ "$name" == SECRET_KEY && ${#value} -lt 32 ]]; then
			problems+=("SECRET_KEY is shorter than 32 characters")
		fi
	done
	if [[ "$auth" == open ]]; then
		problems+=("API_AUTH=open: anyone who reaches the API may read, cancel and delete every job")
	fi
	if [[ "$environment" == production && ${#problems[@]} -gt 0 ]]; then
		{
			printf 'error: refusing to start: ENVIRONMENT=production and %s has settings no one chose:\n' "$(_compose_envfile)"
			printf '  %s\n' "${problems[@]}"
			printf 'Set each secret to a fresh random value (openssl rand -hex 32) and API_AUTH=keys, or write\n'
			printf 'a new settings file with ./manage.sh %s init. ENVIRONMENT=local is for a machine no one\n' "$profile"
			printf 'else can reach.\n'
		} >&2
		exit 1
	fi
	for reason in ${problems[@]+"${problems[@]}"}; do
		warn "ENVIRONMENT=local: $reason"
	done
	if [[ "$auth" == open ]]; then
		bind="$(_compose_setting BIND_ADDRESS 127.0.0.1)"
		_compose_is_loopback "$bind" ||
			die "API_AUTH=open with BIND_ADDRESS=$bind: an open API is for this machine only (BIND_ADDRESS=127.0.0.1)"
		warn "THE API IS OPEN (API_AUTH=open): no key is asked for; for frontend work on this machine only"
	fi
	# Prometheus authenticates to /metrics with METRICS_TOKEN (the Compose secret metrics_token).
	if [[ "$auth" == keys && ",$(_compose_setting COMPOSE_PROFILES | tr -d ' ')," == *,monitoring,* &&
		-z "$(_compose_setting METRICS_TOKEN)" ]]; then
		die "COMPOSE_PROFILES has monitoring and METRICS_TOKEN is empty: Prometheus needs it for GET /metrics (openssl rand -hex 32)"
	fi
}

# 32 random bytes as 64 hex digits.
_compose_random_secret() { od -An -tx1 -N32 /dev/urandom | tr -d ' \n'; }

# init [--force]: the settings file from .env.example, each CHANGE-ME value replaced with a fresh
# random secret, mode 600. An existing file is kept (its secrets are in use: MinIO's data, the
# dashboard's login, signed links) unless --force, which keeps it as a backup beside the new one.
_compose_init() {
	local profile="$1" force=false example envfile tmp line backup="" filled=()
	shift
	while [[ $# -gt 0 ]]; do
		case "$1" in
		--force) force=true ;;
		*) die "init: unknown argument '$1' (init [--force])" ;;
		esac
		shift
	done
	example="$MANAGE_ROOT/.env.example"
	[[ -f "$example" ]] || die "$example not found"
	envfile="$(_compose_envfile)"
	if [[ -e "$envfile" ]] && ! $force; then
		die "$envfile exists: not replacing it (its secrets are in use); --force replaces it and keeps a backup"
	fi
	[[ -r /dev/urandom ]] || die "/dev/urandom is not readable: cannot make secrets"
	tmp="$(umask 077 && mktemp "$(dirname "$envfile")/.env.init.XXXXXX")" ||
		die "cannot write in $(dirname "$envfile")"
	chmod 600 "$tmp"
	{
		printf '# Written by ./manage.sh init from .env.example on %s, with fresh random secrets.\n' \
			"$(date -u +%Y-%m-%dT%H:%M:%SZ)"
		while IFS= read -r line || [[ -n "$line" ]]; do
			if [[ "$line" =~ ^([A-Z0-9_]+)=.*CHANGE-ME ]]; then
				filled+=("${BASH_REMATCH[1]}")
				printf '%s=%s\n' "${BASH_REMATCH[1]}" "$(_compose_random_secret)"
			else
				printf '%s\n' "$line"
			fi
		done <"$example"
	} >"$tmp" || {
		rm -f "$tmp"
		die "could not write $tmp"
	}
	if [[ ${#filled[@]} -eq 0 || "$(grep -cE '^[A-Z0-9_]+=[0-9a-f]{64}$' "$tmp" || true)" -ne ${#filled[@]} ]]; then
		rm -f "$tmp"
		die "could not make the secrets (od and /dev/urandom)"
	fi
	if [[ -e "$envfile" ]]; then
		backup="$envfile.bak-$(date +%Y%m%d-%H%M%S)"
		(umask 077 && cp "$envfile" "$backup") || {
			rm -f "$tmp"
			die "could not back up $envfile"
		}
		chmod 600 "$backup"
	fi
	mv -f "$tmp" "$envfile" || {
		rm -f "$tmp"
		die "could not write $envfile"
	}
	info "wrote $envfile (mode 600) with fresh ${filled[*]}"
	[[ -z "$backup" ]] || info "the old file is $backup"
	info "next: ./manage.sh $profile start, then an API key: ./manage.sh $profile keys create NAME [--admin]"
	info "the rq-dashboard login is RQ_DASHBOARD_USERNAME / RQ_DASHBOARD_PASSWORD in $envfile"
}

# docker compose for PROFILE, from the repository root whatever the caller's directory: relative
# paths inside every compose file (build contexts, bind mounts) are from the repository root.
# mac has no worker container: it runs the services only (no --profile).
_compose() {
	local profile="$1" file args=(--project-directory "$MANAGE_ROOT")
	shift
	[[ ${#_COMPOSE_FILES[@]} -gt 0 ]] || _compose_resolve_files
	for file in "${_COMPOSE_FILES[@]}"; do
		args+=(-f "$file")
	done
	args+=(--env-file "$(_compose_envfile)")
	[[ "$profile" == mac ]] || args+=(--profile "$profile")
	# Optional services on top of the hardware profile, e.g. COMPOSE_PROFILES=monitoring
	# (Prometheus). Compose ignores the variable once --profile is given, so pass each one.
	local extra name
	IFS=, read -r -a extra <<<"$(_compose_setting COMPOSE_PROFILES)"
	for name in "${extra[@]}"; do
		name="${name// /}"
		[[ -n "$name" && "$name" != "$profile" ]] && args+=(--profile "$name")
	done
	_compose_docker compose "${args[@]}" "$@"
}

_compose_worker_service() {
	case "$1" in
	cpu | nvidia | amd) printf 'worker-%s\n' "$1" ;;
	*) return 1 ;;
	esac
}

_compose_backend_url() { printf 'http://localhost:%s\n' "$(_compose_setting BACKEND_PORT 8000)"; }
_compose_console_url() { printf 'http://localhost:%s\n' "$(_compose_setting MINIO_CONSOLE_PORT 9001)"; }
_compose_dashboard_url() { printf 'http://127.0.0.1:%s\n' "$(_compose_setting RQ_DASHBOARD_PORT 9181)"; }

_compose_group_of() {
	case "$1" in
	VIDEO_GID) printf 'video\n' ;;
	RENDER_GID) printf 'render\n' ;;
	esac
}

# The amd worker runs as a non-root user: give it the host's groups of /dev/kfd and /dev/dri.
_compose_prepare_amd() {
	local var gid
	[[ -e /dev/kfd ]] || die "/dev/kfd not found: the amdgpu kernel driver (ROCm) is not loaded on this host"
	[[ -d /dev/dri ]] || die "/dev/dri not found: no GPU render nodes on this host"
	for var in VIDEO_GID RENDER_GID; do
		[[ -n "$(_compose_setting "$var")" ]] && continue
		gid="$(getent group "$(_compose_group_of "$var")" 2>/dev/null | cut -d: -f3 || true)"
		if [[ -n "$gid" ]]; then
			export "$var=$gid"
		else
			warn "no '$(_compose_group_of "$var")' group on this host: set $var in .env to the group owning /dev/kfd or /dev/dri"
		fi
	done
}

_compose_check_nvidia() {
	if ! _compose_docker info --format '{{json .Runtimes}}' 2>/dev/null | grep nvidia >/dev/null; then  # no -q: see venv_has_real_analysis
		warn "Docker lists no 'nvidia' runtime: install the NVIDIA Container Toolkit if the worker cannot see the GPU"
	fi
}

# How long start waits for the stack (COMPOSE_WAIT_SECONDS, environment or .env; default 180).
_compose_wait_seconds() {
	local seconds
	seconds="$(_compose_setting COMPOSE_WAIT_SECONDS 180)"
	[[ "$seconds" =~ ^[0-9]+$ && "$seconds" -gt 0 ]] ||
		die "COMPOSE_WAIT_SECONDS must be a number of seconds, not '$seconds'"
	printf '%s\n' "$seconds"
}

# Wait until GET /health answers 200 (the backend's dependencies are up).
_compose_wait_backend() {
	local profile="$1" url deadline seconds
	url="$(_compose_backend_url)/health"
	command -v curl >/dev/null 2>&1 || {
		warn "curl not found: not waiting for $url"
		return 0
	}
	seconds="$(_compose_wait_seconds)"
	deadline=$((SECONDS + seconds))
	info "waiting for $url"
	until curl -fsS -o /dev/null --max-time 5 "$url" 2>/dev/null; do
		((SECONDS < deadline)) || die "the backend did not become healthy in $seconds s: ./manage.sh $profile logs backend"
		sleep 2
	done
}

# --- the native worker of the mac profile -----------------------------------

_compose_mac_pidfile() { printf '%s/worker.pid\n' "$(_compose_local_dir)"; }
_compose_mac_logfile() { printf '%s/worker.log\n' "$(_compose_local_dir)"; }

_compose_mac_worker_pid() {
	local pidfile pid
	pidfile="$(_compose_mac_pidfile)"
	[[ -f "$pidfile" ]] || return 1
	pid="$(cat "$pidfile")"
	[[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
	printf '%s\n' "$pid"
}

_compose_mac_worker_start() {
	local pid python models_dir logfile
	if pid="$(_compose_mac_worker_pid)"; then
		info "native worker already running (pid $pid)"
		return 0
	fi
	[[ "$(uname -s)" == Darwin ]] || warn "profile mac on $(uname -s): the native worker will not find MPS (DEVICE=mps)"
	ensure_venv gpu
	python="$VENV_DIR/bin/python"
	mkdir -p "$(_compose_local_dir)"
	models_dir="$(_compose_setting MODELS_DIR "$MANAGE_ROOT/.local/models")"
	if ! (cd "$MANAGE_ROOT" && MODELS_DIR="$models_dir" "$python" -m worker.models.prepare --check >/dev/null 2>&1); then
		info "preparing the model weights in $models_dir"
		(cd "$MANAGE_ROOT" && MODELS_DIR="$models_dir" "$python" -m worker.models.prepare) ||
			die "python -m worker.models.prepare failed"
	fi
	logfile="$(_compose_mac_logfile)"
	info "starting the native worker (DEVICE=mps), log: $logfile"
	(
		cd "$MANAGE_ROOT" || exit 1
		export REDIS_URL S3_ENDPOINT_URL S3_PUBLIC_ENDPOINT_URL
		REDIS_URL="redis://127.0.0.1:$(_compose_setting REDIS_PORT 6379)/0"
		S3_ENDPOINT_URL="http://127.0.0.1:$(_compose_setting MINIO_API_PORT 9000)"
		S3_PUBLIC_ENDPOINT_URL="$(_compose_setting S3_PUBLIC_ENDPOINT_URL "http://localhost:9000")"
		export S3_ACCESS_KEY S3_SECRET_KEY S3_BUCKET S3_REGION QUEUE_NAME USE_MOCK_ANALYSIS DEFAULT_PROFILE MAX_VIDEO_SECONDS
		S3_ACCESS_KEY="$(_compose_setting MINIO_ROOT_USER)"
		S3_SECRET_KEY="$(_compose_setting MINIO_ROOT_PASSWORD)"
		S3_BUCKET="$(_compose_setting S3_BUCKET dance-analysis)"
		S3_REGION="$(_compose_setting S3_REGION us-east-1)"
		QUEUE_NAME="$(_compose_setting QUEUE_NAME analysis)"
		USE_MOCK_ANALYSIS="$(_compose_setting USE_MOCK_ANALYSIS false)"
		DEFAULT_PROFILE="$(_compose_setting DEFAULT_PROFILE fast)"
		MAX_VIDEO_SECONDS="$(_compose_setting MAX_VIDEO_SECONDS 1800)"
		# The same rules as the containers (production: secrets checked before start).
		export ENVIRONMENT API_AUTH SECRET_KEY
		ENVIRONMENT="$(_compose_setting ENVIRONMENT production)"
		API_AUTH="$(_compose_setting API_AUTH keys)"
		SECRET_KEY="$(_compose_setting SECRET_KEY)"
		export DEVICE=mps MODELS_DIR="$models_dir"
		# Operators MPS lacks run on the CPU instead of failing the job.
		export PYTORCH_ENABLE_MPS_FALLBACK=1
		exec nohup "$python" -m worker.supervisor >>"$logfile" 2>&1
	) &
	pid=$!
	printf '%s\n' "$pid" >"$(_compose_mac_pidfile)"
	sleep 1
	kill -0 "$pid" 2>/dev/null || die "the native worker exited at once: see $logfile"
	info "native worker running (pid $pid)"
}

_compose_mac_worker_stop() {
	local pid waited=0
	if ! pid="$(_compose_mac_worker_pid)"; then
		rm -f "$(_compose_mac_pidfile)"
		return 0
	fi
	info "stopping the native worker (pid $pid)"
	kill -TERM "$pid" 2>/dev/null || true
	# A warm shutdown lets the current job finish its stage; give it a while.
	while kill -0 "$pid" 2>/dev/null && ((waited < ${COMPOSE_STOP_SECONDS:-60})); do
		sleep 1
		waited=$((waited + 1))
	done
	if kill -0 "$pid" 2>/dev/null; then
		warn "the native worker did not stop in ${COMPOSE_STOP_SECONDS:-60} s: killing it"
		kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -f "$(_compose_mac_pidfile)"
}

# --- commands -----------------------------------------------------------------

# start/restart options, parsed before anything is stopped: _COMPOSE_NO_BUILD (--no-build, or
# COMPOSE_NO_BUILD=true in the environment or .env), _COMPOSE_WAIT (--wait) and
# _COMPOSE_WAIT_SECONDS (COMPOSE_WAIT_SECONDS).
_COMPOSE_NO_BUILD=false
_COMPOSE_WAIT=false
_COMPOSE_WAIT_SECONDS=180
_compose_start_options() {
	local command="$1"
	shift
	_COMPOSE_NO_BUILD=false
	_COMPOSE_WAIT=false
	is_true "$(_compose_setting COMPOSE_NO_BUILD false)" && _COMPOSE_NO_BUILD=true
	while [[ $# -gt 0 ]]; do
		case "$1" in
		--no-build) _COMPOSE_NO_BUILD=true ;;
		--wait) _COMPOSE_WAIT=true ;;
		*) die "$command: unknown argument '$1' (options: --no-build, --wait, -f FILE)" ;;
		esac
		shift
	done
	_COMPOSE_WAIT_SECONDS="$(_compose_wait_seconds)"
}

# Before `up --no-build`: every image the profile's services use must be on this machine, or
# compose would try to pull it (dance/backend from Docker Hub, which has no such image).
_compose_check_images() {
	local profile="$1" images image missing=() prefix
	images="$(_compose "$profile" config --images)" ||
		die "docker compose config failed (above): check the compose files and $(_compose_envfile)"
	while IFS= read -r image; do
		[[ -n "$image" ]] || continue
		_compose_docker image inspect "$image" >/dev/null 2>&1 || missing+=("$image")
	done < <(printf '%s\n' "$images" | sort -u)
	[[ ${#missing[@]} -eq 0 ]] && return 0
	prefix="$(_compose_setting IMAGE_PREFIX dance)/"
	printf 'error: --no-build, and %s image(s) the %s profile needs are not on this machine:\n' "${#missing[@]}" "$profile" >&2
	for image in "${missing[@]}"; do
		if [[ "$image" == "$prefix"* ]]; then
			printf '  %s   built from this repository: ./manage.sh %s build\n' "$image" "$profile" >&2
		else
			printf '  %s   docker pull %s (from your registry or mirror)\n' "$image" "$image" >&2
		fi
	done
	cat >&2 <<EOF
Build this project's images here with ./manage.sh $profile build, or bring images built
elsewhere: docker pull them from your registry (IMAGE_PREFIX/IMAGE_TAG or an override file
names them there) or docker load -i ARCHIVE (made with docker save). No public registry has
this project's images, so compose cannot pull them for you.
EOF
	exit 1
}

# Before anything is stopped or started: the settings' warnings, the host's devices, the images.
_compose_start_prepare() {
	local profile="$1" command="$2"
	shift 2
	_compose_start_options "$command" "$@"
	_compose_check_secrets "$profile"
	case "$profile" in
	amd) _compose_prepare_amd ;;
	nvidia) _compose_check_nvidia ;;
	esac
	if $_COMPOSE_NO_BUILD; then
		_compose_check_images "$profile"
	fi
}

# `up --wait` failed: what every container is doing, then the end of the logs of those in
# trouble (unhealthy, still starting, restarting, or exited with an error).
_compose_up_failed() {
	local profile="$1" service state health code trouble=" "
	printf 'error: docker compose up --wait failed: not every service became healthy in %s s (COMPOSE_WAIT_SECONDS)\n' \
		"$_COMPOSE_WAIT_SECONDS" >&2
	_compose "$profile" ps --all >&2 || true
	while IFS='|' read -r service state health code; do
		[[ -n "$service" && "$trouble" != *" $service "* ]] || continue
		if [[ "$health" == unhealthy || "$health" == starting || "$state" == restarting || "$state" == dead ||
			("$state" == exited && "$code" != 0) ]]; then
			trouble+="$service "
		fi
	done < <(_compose "$profile" ps --all --format '{{.Service}}|{{.State}}|{{.Health}}|{{.ExitCode}}' 2>/dev/null || true)
	# shellcheck disable=SC2086 # one word per service name
	set -- $trouble
	info "the last 50 log lines of ${*:-every service}:"
	_compose "$profile" logs --no-color --tail 50 "$@" >&2 || true
	exit 1
}

_compose_up() {
	local profile="$1" up=(up --detach)
	if $_COMPOSE_NO_BUILD; then
		up+=(--no-build)
	else
		up+=(--build)
	fi
	if $_COMPOSE_WAIT; then
		# Returns when every service is healthy (one-shot services: exited 0), Compose v2.17+.
		up+=(--wait --wait-timeout "$_COMPOSE_WAIT_SECONDS" --remove-orphans)
		_compose "$profile" "${up[@]}" || _compose_up_failed "$profile"
	else
		up+=(--remove-orphans)
		_compose "$profile" "${up[@]}"
	fi
	# The last check either way: the API answers and sees Redis and storage.
	_compose_wait_backend "$profile"
	if [[ "$profile" == mac ]]; then
		_compose_mac_worker_start
	fi
	info "API:           $(_compose_backend_url)  (docs: $(_compose_backend_url)/docs)"
	info "MinIO console: $(_compose_console_url)"
	info "rq-dashboard:  $(_compose_dashboard_url)"
	if [[ "$(_compose_setting API_AUTH keys)" == keys ]]; then
		info "API keys:      ./manage.sh $profile keys create NAME [--admin]   (send: Authorization: Bearer KEY)"
	fi
}

# Build the images only: nothing starts. `worker` means the profile's worker.
_compose_build() {
	local profile="$1" args=()
	shift
	while [[ $# -gt 0 ]]; do
		case "$1" in
		--no-cache) args+=("$1") ;;
		-*) die "build: unknown option '$1' (build [--no-cache] [SERVICE...])" ;;
		worker)
			[[ "$profile" != mac ]] || die "profile mac has no worker image: its worker runs natively"
			args+=("$(_compose_worker_service "$profile")")
			;;
		*) args+=("$1") ;;
		esac
		shift
	done
	_compose "$profile" build ${args[@]+"${args[@]}"}
	info "built; start without building: ./manage.sh $profile start --no-build"
}

_compose_stop() {
	local profile="$1"
	if [[ "$profile" == mac ]]; then
		_compose_mac_worker_stop
	fi
	_compose "$profile" stop
}

_compose_status() {
	local profile="$1" pid
	_compose "$profile" ps --all
	if [[ "$profile" == mac ]]; then
		if pid="$(_compose_mac_worker_pid)"; then
			printf 'native worker: running (pid %s), log %s\n' "$pid" "$(_compose_mac_logfile)"
		else
			printf 'native worker: not running\n'
		fi
	fi
}

_compose_logs() {
	local profile="$1" service=""
	shift
	# `logs -f` as with docker compose: it follows anyway.
	while [[ $# -gt 0 && ("$1" == -f || "$1" == --follow) ]]; do
		shift
	done
	if [[ $# -gt 0 && "$1" != -* ]]; then
		service="$1"
		shift
	fi
	if [[ "$service" == worker ]]; then
		if [[ "$profile" == mac ]]; then
			[[ -f "$(_compose_mac_logfile)" ]] || die "no native worker log yet: $(_compose_mac_logfile)"
			exec tail -n 200 -f "$(_compose_mac_logfile)"
		fi
		service="$(_compose_worker_service "$profile")"
	fi
	_compose "$profile" logs --follow --tail "${COMPOSE_LOG_LINES:-200}" "$@" ${service:+"$service"}
}

_compose_shell_worker() {
	local profile="$1" service
	if [[ "$profile" == mac ]]; then
		die "profile mac runs the worker natively, not in a container: its log is $(_compose_mac_logfile)"
	fi
	service="$(_compose_worker_service "$profile")"
	_compose "$profile" exec "$service" bash
}

_compose_clean() {
	local profile="$1" yes=false answer
	shift
	while [[ $# -gt 0 ]]; do
		case "$1" in
		-y | --yes) yes=true ;;
		*) die "clean: unknown option '$1' (only --yes/-y)" ;;
		esac
		shift
	done
	if ! $yes; then
		[[ -t 0 ]] || die "clean deletes every stored video and result: re-run with --yes to confirm"
		read -r -p "Remove the containers and volumes (every stored video, result and queued job)? [y/N] " answer
		[[ "$answer" =~ ^[Yy]([Ee][Ss])?$ ]] || {
			info "nothing removed"
			return 0
		}
	fi
	if [[ "$profile" == mac ]]; then
		_compose_mac_worker_stop
	fi
	_compose "$profile" down --volumes --remove-orphans
}

# Open URL in a browser when the host has an opener, else print it.
_compose_open() {
	local url="$1" what="$2"
	info "$what: $url"
	if command -v open >/dev/null 2>&1 && [[ "$(uname -s)" == Darwin ]]; then
		open "$url"
	elif command -v xdg-open >/dev/null 2>&1 && [[ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ]]; then
		xdg-open "$url" >/dev/null 2>&1 || true
	fi
	printf '%s\n' "$url"
}

# API keys, inside the backend container (it reaches Redis with the stack's own settings).
_compose_keys() {
	local profile="$1" usage arg name=false
	shift
	usage="usage: ./manage.sh $profile keys create NAME [--admin] [--json] | keys list [--json] | keys revoke KEY_ID"
	case "${1:-}" in
	create)
		for arg in "${@:2}"; do
			[[ "$arg" == -* ]] || name=true
		done
		$name || die "keys create needs a NAME (who or what uses the key): $usage"
		;;
	list) ;;
	revoke) [[ $# -eq 2 && "$2" != -* ]] || die "keys revoke needs one KEY_ID (see: keys list): $usage" ;;
	*) die "$usage" ;;
	esac
	_compose "$profile" exec -T backend python -m shared.apikeys "$@"
}

# Upload through the script the local stack uses too (scripts/manage/test_upload.py). The API
# key goes to it in the environment (API_KEY), never on a command line others can read in ps.
_compose_test_upload() {
	local file="" analysis_profile="" key="" reference="" mirror="" py args=()
	local usage="./manage.sh PROFILE test-upload FILE [--profile fast|accurate] [--key KEY] [--reference JOB_ID [--mirror auto|on|off]]"
	while [[ $# -gt 0 ]]; do
		case "$1" in
		--key)
			[[ $# -ge 2 ]] || die "--key needs an API key"
			key="$2"
			shift 2
			;;
		--key=*)
			key="${1#--key=}"
			shift
			;;
		--profile)
			[[ $# -ge 2 ]] || die "--profile needs a value (fast or accurate)"
			analysis_profile="$2"
			shift 2
			;;
		--profile=*)
			analysis_profile="${1#--profile=}"
			shift
			;;
		--reference)
			[[ $# -ge 2 ]] || die "--reference needs the job id of a succeeded analysis"
			reference="$2"
			shift 2
			;;
		--reference=*)
			reference="${1#--reference=}"
			shift
			;;
		--mirror)
			[[ $# -ge 2 ]] || die "--mirror needs a value (auto, on or off)"
			mirror="$2"
			shift 2
			;;
		--mirror=*)
			mirror="${1#--mirror=}"
			shift
			;;
		-*) die "unknown option '$1' (usage: $usage)" ;;
		*)
			[[ -z "$file" ]] || die "one file at a time"
			file="$1"
			shift
			;;
		esac
	done
	[[ -n "$file" ]] || die "usage: $usage"
	[[ -f "$file" && -r "$file" ]] || die "no such file: $file"
	case "$analysis_profile" in "" | fast | accurate) ;; *) die "--profile must be fast or accurate, not '$analysis_profile'" ;; esac
	check_comparison_options "$reference" "$mirror" # scripts/manage/local.sh
	command -v curl >/dev/null 2>&1 || die "curl not found: install curl"
	py="$VENV_DIR/bin/python"
	[[ -x "$py" ]] || py=python3
	args=(--api "$(_compose_backend_url)" --file "$file")
	[[ -n "$analysis_profile" ]] && args+=(--profile "$analysis_profile")
	[[ -n "$reference" ]] && args+=(--reference "$reference")
	[[ -n "$mirror" ]] && args+=(--mirror "$mirror")
	[[ -n "$key" ]] || key="$(_compose_setting API_KEY)"
	if [[ -n "$key" ]]; then
		export API_KEY="$key"
	else
		unset API_KEY
	fi
	exec "$py" "$MANAGE_ROOT/scripts/manage/test_upload.py" "${args[@]}"
}

# compose_main PROFILE [-f FILE]... COMMAND [ARGS...]
# -f/--file FILE may come before or after COMMAND (after `logs`, -f means follow, as in docker
# compose logs: use --file there); everything else after the profile goes to COMMAND.
compose_main() {
	local profile="${1:-cpu}" command="" known=false p files=() args=()
	shift || true
	for p in "${HARDWARE_PROFILES[@]}"; do
		[[ "$p" == "$profile" ]] && known=true
	done
	$known || die "unknown profile '$profile' (one of: ${HARDWARE_PROFILES[*]})"
	while [[ $# -gt 0 ]]; do
		case "$1" in
		-f | --file)
			if [[ "$1" == -f && "$command" == logs ]]; then
				args+=("$1")
				shift
				continue
			fi
			[[ $# -ge 2 ]] || die "$1 needs a compose file"
			files+=("$2")
			shift 2
			;;
		--file=*)
			files+=("${1#--file=}")
			shift
			;;
		*)
			if [[ -z "$command" && "$1" != -* ]]; then
				command="$1"
			else
				args+=("$1")
			fi
			shift
			;;
		esac
	done
	[[ -n "$command" ]] || die "no command given (one of: ${COMPOSE_COMMANDS[*]})"
	set -- ${args[@]+"${args[@]}"}

	case "$command" in
	start | stop | restart | status | logs | shell-backend | shell-worker | clean | build | overview | keys)
		_compose_resolve_files ${files[@]+"${files[@]}"}
		_compose_need_docker
		_compose_need_envfile "$profile"
		;;
	init | test-upload | minio-console | rq-dashboard) ;;
	*) die "unknown command '$command' (one of: ${COMPOSE_COMMANDS[*]})" ;;
	esac

	case "$command" in
	init) _compose_init "$profile" "$@" ;;
	start)
		_compose_start_prepare "$profile" start "$@"
		_compose_up "$profile"
		;;
	stop) _compose_stop "$profile" ;;
	restart)
		_compose_start_prepare "$profile" restart "$@"
		_compose_stop "$profile"
		_compose_up "$profile"
		;;
	build) _compose_build "$profile" "$@" ;;
	# The queue, the workers, job counts and the last failures, as the backend sees them.
	overview) _compose "$profile" exec -T backend python -m shared.overview "$@" ;;
	keys) _compose_keys "$profile" "$@" ;;
	status) _compose_status "$profile" ;;
	logs) _compose_logs "$profile" "$@" ;;
	shell-backend) _compose "$profile" exec backend bash ;;
	shell-worker) _compose_shell_worker "$profile" ;;
	test-upload) _compose_test_upload "$@" ;;
	clean) _compose_clean "$profile" "$@" ;;
	minio-console) _compose_open "$(_compose_console_url)" "MinIO console (log in with MINIO_ROOT_USER / MINIO_ROOT_PASSWORD)" ;;
	rq-dashboard) _compose_open "$(_compose_dashboard_url)" "rq-dashboard (log in with RQ_DASHBOARD_USERNAME / RQ_DASHBOARD_PASSWORD)" ;;
	esac
}
