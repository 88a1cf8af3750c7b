#!/usr/bin/env bash
# Install and start the whole platform on this Debian/Ubuntu host: system
# packages, secrets, etcd, MariaDB, Redis, the load balancer, the log
# stream, every service built and one instance of each running. Running it
# again changes nothing and loses nothing.
#
#   setup-all-in-one.sh [--docker|--native]
#     --docker  every service runs in a container from its image (the
#               original's way; a Docker engine is installed and started)
#     --native  every service runs as processes from a release (default)
#
# Settings (environment, first run only; kept in $MF_HOME/microflack.conf):
#   MICROFLACK_IP (127.0.0.1)  LB_PORT (80)  ETCD_PORT (2379)
#   REDIS (127.0.0.1:6379)  REDIS_CHANNEL (flask-socketio)  LOGS_PORT (1095)
#   MF_DB_PREFIX (microflack_)
#   MF_HOME (~/.microflack)
set -euo pipefail
# shellcheck source=../lib/common.sh
source "$(dirname "$(readlink -f "$0")")/../lib/common.sh"
# shellcheck source=../lib/daemons.sh
source "$MF_ADMIN/lib/daemons.sh"
# shellcheck source=../lib/instances.sh
source "$MF_ADMIN/lib/instances.sh"

usage_line="[--docker|--native]"
runtime=
for arg in "$@"; do
  case "$arg" in
    --docker) runtime=docker ;;
    --native) runtime=native ;;
    -h|--help) usage "$usage_line" "other settings come from the environment (see the script's header)" ;;
    *) usage "$usage_line" "unknown option: $arg" ;;
  esac
done
# The runtime of an earlier run stays unless asked otherwise.
if [ -n "$runtime" ]; then
  export MICROFLACK_RUNTIME="$runtime"
fi
check_runtime

if [ "$MICROFLACK_RUNTIME" = docker ]; then
  "$MF_ADMIN/install/setup-host.sh" --with-docker
else
  "$MF_ADMIN/install/setup-host.sh"
fi

# This host's settings: saved once, never changed by later runs.
conf="$MF_HOME/microflack.conf"
mkdir -p "$MF_HOME"
if [ ! -f "$conf" ]; then
  cat > "$conf" <<CONF
# MicroFlack settings of this host (written by setup-all-in-one.sh).
# A variable set in the environment wins over the value here.
MICROFLACK_IP=\${MICROFLACK_IP:-$MICROFLACK_IP}
LB_PORT=\${LB_PORT:-$LB_PORT}
ETCD_PORT=\${ETCD_PORT:-$ETCD_PORT}
ETCD=\${ETCD:-$ETCD}
REDIS=\${REDIS:-$REDIS}
REDIS_CHANNEL=\${REDIS_CHANNEL:-$REDIS_CHANNEL}
LOGS_PORT=\${LOGS_PORT:-$LOGS_PORT}
MF_DB_PREFIX=\${MF_DB_PREFIX:-$MF_DB_PREFIX}
CONF
  log "settings saved in $conf"
fi
# The runtime is the one setting a later run may change (--docker/--native).
sed -i '/^MICROFLACK_RUNTIME=/d' "$conf"
# shellcheck disable=SC2016 # the line expands when mfvars reads it
printf 'MICROFLACK_RUNTIME=${MICROFLACK_RUNTIME:-%s}\n' "$MICROFLACK_RUNTIME" >> "$conf"

"$MF_ADMIN/install/make-secrets.sh"
# shellcheck source=../mfvars
source "$MF_ADMIN/mfvars"

ensure_etcd
ensure_mariadb
case "$REDIS" in
  127.*|localhost:*) ensure_redis "$REDIS" ;;
  *) log "using the Redis at $REDIS" ;;
esac

"$MF_ADMIN/bin/mfbuild" all
"$MF_ADMIN/bin/mflb" start
ensure_log_server

for service in $SERVICES; do
  running=
  for instance in $(instances "$service"); do
    if instance_alive "$instance"; then
      running="$instance"
    else    # gone since (e.g. a reboot): forget it
      forget_instance "$instance"
    fi
  done
  if [ -n "$running" ]; then
    log "$service runs ($running)"
  else
    # Assigned first: a failure inside "$(...)" in log's argument would
    # not stop this script (set -e looks at log's own status).
    started="$("$MF_ADMIN/bin/mfrun" "$service")" ||
      die "$service did not start (mfrun's message above)"
    log "started $started"
  fi
done

cat <<DONE

MicroFlack is running: open $LB/ in a browser.
Load the environment in your shell:   source $MF_ADMIN/mfvars
Then: mflogs (live logs), etcd-dump (registry), mfrun/mfkill <service>.
Load balancer statistics: $LB/stats (user $STATS_USER, password in $MF_HOME/secrets/secrets.env)
Logs over HTTP: http://$MICROFLACK_IP:$LOGS_PORT/logs (user $LOGS_USER, same file)
DONE
