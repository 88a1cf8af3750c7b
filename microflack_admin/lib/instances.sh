# shellcheck shell=bash
# Running service instances, recorded in $MF_HOME/run/instances/<id>.info
# (SERVICE, TAG, PORT, ADDRESS: the host:port it registers, RUNTIME, PID,
# SUPERVISED; STOPPING=1 once a stop began). In the native runtime an
# instance is one gunicorn master started from a release by the service's
# boot.sh, a program of the platform's supervisor named after the instance
# id (SUPERVISED=1; PID was its first pid: the supervisor knows the current
# one); in the Docker runtime it is a container named after the instance
# id, started from the service's image (PID follows its log).
# Source after common.sh and daemons.sh.

# shellcheck source=images.sh
source "$MF_ADMIN/lib/images.sh"
# shellcheck source=supervisor.sh
source "$MF_ADMIN/lib/supervisor.sh"

INSTANCES_DIR="$MF_HOME/run/instances"
# shellcheck disable=SC2034 # used by the scripts that source this file
CONSOLIDATED_LOG="$MF_HOME/logs/microflack.log"

# The pending upgrade (mfupgrade's, NAME=value lines), and the lock that
# one upgrade command at a time (and mfclean) holds on descriptor 9.
UPGRADE_STATE="$MF_HOME/run/upgrade.state"

# upgrade_state NAME: one value of the pending upgrade (empty if none).
upgrade_state() { sed -n "s/^$1=//p" "$UPGRADE_STATE" 2>/dev/null; }

# lock_upgrades MESSAGE: take the upgrade lock, or die with MESSAGE.
lock_upgrades() {
  mkdir -p "$MF_HOME/run"
  exec 9> "$MF_HOME/run/upgrade.lock"
  flock -n 9 || die "$1"
}

# release_dir SERVICE TAG
release_dir() { printf '%s/releases/%s/%s\n' "$MF_HOME" "$1" "$2"; }

# builds SERVICE: the tags of a service's builds in this runtime (releases
# or images), oldest first.
builds() {
  local dir="$MF_HOME/releases/$1"
  if [ "$MICROFLACK_RUNTIME" = docker ]; then
    image_tags "$1"
    return 0
  fi
  [ -d "$dir" ] || return 0
  find "$dir" -mindepth 1 -maxdepth 1 -type d ! -name '.*' -printf '%f\n' |
    sort -V
}

# newest_tag SERVICE: the newest build of a service (version order).
newest_tag() { builds "$1" | tail -n 1; }

# free_port: a port free on the address the instances listen on
# (INSTANCE_BIND).
free_port() {
  python3 -c 'import socket, sys
s = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET)
s.bind((sys.argv[1], 0))
print(s.getsockname()[1])' "${INSTANCE_BIND:-$MICROFLACK_IP}"
}

# host_id: this host's name in its instances' ids: HOST_ID when set (hosts
# that share a name, as the namespaces of mfcluster do), else its name.
host_id() {
  printf '%s\n' "${HOST_ID:-$(hostname -s)}" | tr -c 'A-Za-z0-9\n-' '-'
}

# instance_field INSTANCE FIELD: one value of an instance's record.
instance_field() {
  sed -n "s/^$2=//p" "$INSTANCES_DIR/$1.info" 2>/dev/null
}

# instances [SERVICE]: the ids of the recorded instances (of a service).
instances() {
  local file name
  [ -d "$INSTANCES_DIR" ] || return 0
  for file in "$INSTANCES_DIR"/*.info; do
    [ -e "$file" ] || continue
    name="$(basename "$file" .info)"
    if [ -z "${1:-}" ] || [ "$(instance_field "$name" SERVICE)" = "$1" ]; then
      printf '%s\n' "$name"
    fi
  done
}

# instance_runtime INSTANCE: how it runs (records older than the Docker
# runtime are native).
instance_runtime() {
  local runtime
  runtime="$(instance_field "$1" RUNTIME)"
  printf '%s\n' "${runtime:-native}"
}

container_running() {
  [ "$(docker container inspect --format '{{.State.Running}}' "$1" 2>/dev/null)" = true ]
}

container_stopped() { ! container_running "$1"; }

# instance_pid INSTANCE: the current pid of a native instance.
instance_pid() {
  if [ -n "$(instance_field "$1" SUPERVISED)" ]; then
    program_pid "$1"
    return
  fi
  instance_field "$1" PID
}

instance_alive() {
  local pid
  if [ "$(instance_runtime "$1")" = docker ]; then
    container_running "$1"
    return
  fi
  pid="$(instance_pid "$1")"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}


healthy() { curl -fsS --max-time 2 "http://$1/health" >/dev/null 2>&1; }

# database_url_override SERVICE: the service's whole database URL when
# the operator gives one (USERS_DATABASE_URL, MESSAGES_DATABASE_URL), else
# nothing.
database_url_override() {
  local var
  var="$(tr '[:lower:]' '[:upper:]' <<< "$1")_DATABASE_URL"
  printf '%s' "${!var:-}"
}

# database_url SERVICE: the SQLAlchemy URL of the service's database: the
# operator's (database_url_override), else its database on
# DB_HOST:DB_PORT, as the user ensure_database makes.
database_url() {
  local var password override
  override="$(database_url_override "$1")"
  if [ -n "$override" ]; then
    printf '%s\n' "$override"
    return 0
  fi
  var="$(tr '[:lower:]' '[:upper:]' <<< "$1")_DB_PASSWORD"
  password="${!var:-}"
  [ -n "$password" ] ||
    die "$var is not set: run microflack_admin/install/make-db-passwords.sh"
  printf 'mysql+pymysql://%s%s:%s@%s:%s/%s%s?charset=utf8mb4\n' \
    "$MF_DB_PREFIX" "$1" "$password" "$DB_HOST" "$DB_PORT" \
    "$MF_DB_PREFIX" "$1"
}

# ensure_database SERVICE: its database and user, created if missing; the
# user's password follows db-passwords.env. A service given a whole URL
# (database_url_override) uses the operator's database as it is.
ensure_database() {
  local name="$MF_DB_PREFIX$1" var password host sql
  [ -z "$(database_url_override "$1")" ] || return 0
  var="$(tr '[:lower:]' '[:upper:]' <<< "$1")_DB_PASSWORD"
  password="${!var:-}"
  [ -n "$password" ] ||
    die "$var is not set: run microflack_admin/install/make-db-passwords.sh"
  ensure_mariadb
  sql="CREATE DATABASE IF NOT EXISTS \`$name\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;"
  for host in $(db_client_hosts); do
    sql+="
CREATE USER IF NOT EXISTS '$name'@'$host' IDENTIFIED BY '$password';
ALTER USER '$name'@'$host' IDENTIFIED BY '$password';
GRANT ALL ON \`$name\`.* TO '$name'@'$host';"
  done
  mariadb_root <<< "$sql"
}

# need_build SERVICE TAG: die unless the service has that build (a
# release, or an image in Docker).
need_build() {
  if [ "$MICROFLACK_RUNTIME" = docker ]; then
    docker image inspect "$(image_name "$1"):$2" >/dev/null 2>&1 ||
      die "no image $(image_name "$1"):$2 (builds: $(builds "$1" | tr '\n' ' '))"
  else
    [ -x "$(release_dir "$1" "$2")/boot.sh" ] ||
      die "no build $1 $2 (builds: $(builds "$1" | tr '\n' ' '))"
  fi
}

# flask_app_of DIR SERVICE: the app `flask` loads from the service's code
# in DIR: its package's, or for a build from before the packages (made
# --from an older commit) its app.py.
flask_app_of() {
  if [ -d "$1/microflack_$2" ]; then
    printf 'microflack_%s.app\n' "$2"
  else
    printf 'app.py\n'
  fi
}

# service_env SERVICE TAG: fills the array SERVICE_ENV with the environment
# (NAME=value) of every process of that build of the service: the
# platform's settings and secrets, its database (created first if
# missing), then the per-host settings of $MF_HOME/config/<service>.env
# (e.g. UI_SOCKETIO=0, ALLOW_PRIVATE_LINKS=1). An instance adds its own
# address and name.
service_env() {
  local service="$1" tag="$2" settings line name
  if [ -z "${JWT_SECRET_KEY:-}" ] || [ -z "${SECRET_KEY:-}" ]; then
    die "SECRET_KEY and JWT_SECRET_KEY are not set: run install/make-secrets.sh (or setup-all-in-one.sh)"
  fi
  SERVICE_ENV=(
    "FLASK_CONFIG=prod"
    "SERVICE_NAME=$service" "SERVICE_VERSION=$tag"
    "ETCD=$ETCD" "LB=$LB" "REDIS=$REDIS" "REDIS_CHANNEL=$REDIS_CHANNEL"
    "SECRET_KEY=$SECRET_KEY" "JWT_SECRET_KEY=$JWT_SECRET_KEY"
    "PYTHONUNBUFFERED=1"
  )
  # The registry's timing, where a host sets it (the workers of several
  # hosts: install/setup-worker.sh).
  for name in ETCD_TIMEOUT REGISTRATION_TTL REGISTRATION_REFRESH; do
    if [ -n "${!name:-}" ]; then SERVICE_ENV+=("$name=${!name}"); fi
  done
  # The app `flask` loads. An image names its own (its FLASK_APP, set
  # when it was built).
  if [ "$MICROFLACK_RUNTIME" != docker ]; then
    SERVICE_ENV+=("FLASK_APP=$(flask_app_of "$(release_dir "$service" "$tag")" "$service")")
  fi
  case " $SERVICES_WITH_DB " in
    *" $service "*)
      ensure_database "$service"
      SERVICE_ENV+=("DATABASE_URL=$(database_url "$service")")
      ;;
  esac
  settings="$MF_HOME/config/$service.env"
  [ -f "$settings" ] || return 0
  while IFS= read -r line || [ -n "$line" ]; do
    case "$line" in ''|'#'*) continue ;; esac
    [[ "$line" =~ ^[A-Z_][A-Z0-9_]*= ]] ||
      die "$settings: not a NAME=value line: $line"
    SERVICE_ENV+=("$line")
  done < "$settings"
}

# private_env_file NAME=value...: a new file, readable by its owner only,
# holding these lines, for `docker run --env-file` (secrets never appear
# on a command line); prints its path. The caller removes it.
private_env_file() {
  local file
  file="$(umask 077 && mktemp)"
  printf '%s\n' "$@" > "$file"
  printf '%s\n' "$file"
}

# The user the images' processes run as (docker/service.Dockerfile).
CONTAINER_UID=10001

# is_secret_setting NAME: whether a setting is a secret, which a container
# reads from a file rather than its environment (`docker inspect` shows
# the environment to anyone allowed to run it).
is_secret_setting() {
  case "$1" in
    SECRET_KEY | JWT_SECRET_KEY | DATABASE_URL | *_DATABASE_URL | *PASSWORD*) return 0 ;;
  esac
  return 1
}

# container_run_args IMAGE SECRETS_FILE NAME=value...: sets CONTAINER_ARGS
# to the `docker run` options of a service container and ENV_FILE to the
# private env file they name (the caller removes it once the container is
# created). The container is hardened: read-only root with a tmpfs /tmp,
# no capabilities, no-new-privileges, memory and process limits
# (CONTAINER_MEMORY, CONTAINER_PIDS). An image that reads its secrets from
# a file (label org.microflack.secrets-file) gets them in SECRETS_FILE,
# owned by its user, read-only, mounted read-only (the caller removes it
# with the container); an older image, in its environment.
container_run_args() {
  local image="$1" secrets_file="$2" variable plain=() secrets=()
  local memory="${CONTAINER_MEMORY:-512m}" pids="${CONTAINER_PIDS:-512}"
  shift 2
  [[ "$memory" =~ ^[1-9][0-9]*[kmg]?$ ]] ||
    die "CONTAINER_MEMORY must be an amount of memory such as 512m or 1g, not '$memory'"
  [[ "$pids" =~ ^[1-9][0-9]{0,5}$ ]] ||
    die "CONTAINER_PIDS must be a number of processes and threads (1-999999), not '$pids'"
  if [ "$(docker image inspect --format \
      '{{ index .Config.Labels "org.microflack.secrets-file" }}' "$image" \
      2>/dev/null)" = 1 ]; then
    for variable in "$@"; do
      if is_secret_setting "${variable%%=*}"; then
        secrets+=("$variable")
      else
        plain+=("$variable")
      fi
    done
  else
    plain=("$@")
  fi
  ENV_FILE="$(private_env_file "${plain[@]}")"
  # The tmpfs options are one argument (commas, not separate elements).
  CONTAINER_ARGS=(--network host --init --env-file "$ENV_FILE"
    --read-only --tmpfs "/tmp:rw,nosuid,nodev,size=64m"
    --cap-drop ALL --security-opt no-new-privileges
    --memory "$memory" --pids-limit "$pids")
  [ ${#secrets[@]} -gt 0 ] || return 0
  (umask 077 && printf '%s\n' "${secrets[@]}" > "$secrets_file")
  if ! chown "$CONTAINER_UID:$CONTAINER_UID" "$secrets_file" 2>/dev/null; then
    rm -f "$secrets_file" "$ENV_FILE"
    die "cannot give the container's secrets file to its user (uid $CONTAINER_UID): the docker runtime needs root"
  fi
  chmod 400 "$secrets_file"
  CONTAINER_ARGS+=(--env SECRETS_FILE=/run/secrets/microflack.env
    --mount "type=bind,src=$secrets_file,dst=/run/secrets/microflack.env,readonly")
}

# build_flask SERVICE TAG ARGS...: `flask ARGS...` of a build of the
# service (a maintenance command such as db-upgrade-locked), in the
# environment SERVICE_ENV (see service_env): from the release's
# virtualenv in its folder, as boot.sh runs, or in a throwaway container
# of its image on the host's network.
build_flask() {
  local service="$1" tag="$2" release secrets_file status=0
  shift 2
  if [ "$MICROFLACK_RUNTIME" = docker ]; then
    secrets_file="$(mktemp)"
    container_run_args "$(image_name "$service"):$tag" "$secrets_file" \
      "${SERVICE_ENV[@]}"
    docker run --rm "${CONTAINER_ARGS[@]}" \
      "$(image_name "$service"):$tag" flask "$@" || status=$?
    rm -f "$ENV_FILE" "$secrets_file"
    return "$status"
  fi
  release="$(release_dir "$service" "$tag")"
  (cd "$release" && env -i HOME="$HOME" LANG=C.UTF-8 \
    "PATH=$release/venv/bin:$PATH" "${SERVICE_ENV[@]}" flask "$@")
}

# stop_instance INSTANCE: out of the registry first, then a graceful stop
# (gunicorn drains its requests); killed if still there after the grace.
# Prints nothing; the record is removed. Fails when the registry could not
# be told (the instance stops all the same: it deletes its own key on the
# way out, or the key expires).
stop_instance() {
  local instance="$1" service pid status=0
  service="$(instance_field "$instance" SERVICE)"
  pid="$(instance_pid "$instance" || true)"
  # The watchdog leaves a stopping instance alone: it answers no health
  # check while it drains, and a kill would make the supervisor (or
  # Docker) start it again.
  if [ -f "$INSTANCES_DIR/$instance.info" ]; then
    printf 'STOPPING=1\n' >> "$INSTANCES_DIR/$instance.info"
  fi
  deregister "$service" "$instance" || status=1
  if [ "$(instance_runtime "$instance")" = docker ]; then
    # SIGTERM to the container is a stop for Docker: no restart follows.
    docker kill --signal TERM "$instance" >/dev/null 2>&1 || true
  elif [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
  fi
  return "$status"
}

# wait_stopped INSTANCE: wait for a stopping instance, kill it if needed.
wait_stopped() {
  local instance="$1" pid
  pid="$(instance_pid "$instance" || true)"
  if [ -n "$(instance_field "$instance" SUPERVISED)" ]; then
    # gunicorn exits 0 once drained, which the supervisor does not restart;
    # unsupervise stops what is still there (SIGKILL after the grace).
    if [ -n "$pid" ] &&
        ! wait_until "${STOP_TIMEOUT:-15}" process_gone "$pid"; then
      log "$instance did not stop in time: killing it"
    fi
    unsupervise "$instance"
    rm -f "$INSTANCES_DIR/$instance.env" "$INSTANCES_DIR/$instance.pgid"
  elif [ "$(instance_runtime "$instance")" = docker ]; then
    if ! wait_until "${STOP_TIMEOUT:-15}" container_stopped "$instance"; then
      log "$instance did not stop in time: killing it"
    fi
    # Its log follower ends with the container.
    docker rm --force "$instance" >/dev/null 2>&1 || true
    rm -f "$INSTANCES_DIR/$instance.secrets"
  elif [ -n "$pid" ] &&
      ! wait_until "${STOP_TIMEOUT:-15}" process_gone "$pid"; then
    log "$instance did not stop in time: killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$INSTANCES_DIR/$instance.info"
}

# forget_instance INSTANCE: the record of an instance that is gone (e.g.
# after a reboot), its registry key and its program. Fails when the
# registry could not be told (the rest is done).
forget_instance() {
  local status=0
  deregister "$(instance_field "$1" SERVICE)" "$1" || status=1
  if [ -n "$(instance_field "$1" SUPERVISED)" ]; then
    unsupervise "$1"
  fi
  rm -f "$INSTANCES_DIR/$1.info" "$INSTANCES_DIR/$1.env" \
    "$INSTANCES_DIR/$1.pgid"
  return "$status"
}

lb_stats() {
  curl -fsS --max-time 2 -u "${STATS_USER:-}:${STATS_PASSWORD:-}" "$LB/stats;csv"
}

# lb_reports_up INSTANCE: the load balancer routes to the instance: its
# server is UP in HAProxy's statistics and a health check has passed (a new
# server counts as UP before its first check, which may still fail).
lb_reports_up() {
  lb_stats 2>/dev/null | awk -F, -v s="$1" '
    NR == 1 { for (i = 1; i <= NF; i++) column[$i] = i; next }
    $2 == s && $column["status"] ~ /^UP/ &&
      $column["check_status"] ~ /L7OK/ { up = 1 }
    END { exit !up }'
}

# connections PORT: established TCP connections to a local port.
connections() {
  ss -Htn state established "( sport = :$1 )" 2>/dev/null | wc -l
}

# retire INSTANCE: out of the registry and of the load balancer's rotation,
# drained (DRAIN_TIMEOUT, 5 s by default), then stopped: how mfupgrade and
# a runtime switch take an instance away without failing a request.
retire() {
  local instance="$1" service port status=0
  service="$(instance_field "$instance" SERVICE)"
  port="$(instance_field "$instance" PORT)"
  if ! deregister "$service" "$instance"; then
    log "$instance keeps serving"
    return 1
  fi
  if lb_stats >/dev/null 2>&1 &&
      ! wait_until "${ROUTE_TIMEOUT:-10}" not_routed "$instance"; then
    log "warning: the load balancer still routes to $instance"
  fi
  wait_until "${DRAIN_TIMEOUT:-5}" drained "$port" ||
    log "$instance still had connections after ${DRAIN_TIMEOUT:-5}s: stopping it"
  stop_instance "$instance" || status=1
  wait_stopped "$instance"
  log "stopped $instance"
  return "$status"
}

# not_routed INSTANCE: the load balancer's statistics (read) no longer
# list the instance's server. Its being merely not UP is not enough: under
# load a check may time out while the server still gets requests.
not_routed() {
  local stats
  stats="$(lb_stats 2>/dev/null)" || return 1
  ! awk -F, -v s="$1" 'NR > 1 && $2 == s { found = 1 } END { exit !found }' \
    <<< "$stats"
}

drained() { [ "$(connections "$1")" -eq 0 ]; }
