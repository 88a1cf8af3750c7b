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
# Run on a platform of the other runtime, it switches it without downtime:
# the builds of the new runtime are made, then each running instance is
# replaced as by mfupgrade roll (a new one started and routed, then the old
# one taken out of rotation, drained and stopped); the new runtime is saved
# once no instance of the old one is left.
# Run after updating this checkout on a platform of an earlier version, it
# upgrades it: the new builds are made and each service rolled to them;
# a platform whose registry is still etcd's v2 API is moved to v3 (a
# bridge routes the old instances meanwhile; etcd restarts without v2).
#
# Settings (environment, first run only; kept in $MF_HOME/microflack.conf,
# where a later run adds the settings an older one did not write):
#   MICROFLACK_IP (127.0.0.1: the chat's and the instances' address)
#   LB_BIND, LOGS_BIND, INSTANCE_BIND (MICROFLACK_IP: where the load
#   balancer, the log stream and the instances listen)
#   ETCD_BIND (127.0.0.1: where the local etcd listens)
#   LB_PORT (80)  ETCD_PORT (2379)  ETCD (http://$ETCD_BIND:$ETCD_PORT)
#   REDIS (127.0.0.1:6379)  REDIS_CHANNEL (flask-socketio)  LOGS_PORT (1095)
#   DB_HOST (127.0.0.1)  DB_PORT (3306)  DB_ADMIN_CNF (none: root)
#   MF_DB_PREFIX (microflack_); USERS_DATABASE_URL, MESSAGES_DATABASE_URL
#   (a service's own URL) are read from the environment, not saved
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
if [ "$MICROFLACK_RUNTIME" = docker ]; then from=native; else from=docker; fi

# A switch (instances of the other runtime are recorded) must meet no
# pending upgrade and no running mfupgrade or mfclean: it replaces
# instances as they do. Checked before anything changes.
switching=
for instance in $(instances); do
  if [ "$(instance_runtime "$instance")" = "$from" ]; then switching=1; fi
done
if [ -n "$switching" ]; then
  [ ! -f "$UPGRADE_STATE" ] ||
    die "an upgrade of $(upgrade_state SERVICE) is pending: finish it (mfupgrade roll) or undo it (mfupgrade abort), then run $MF_SCRIPT --$MICROFLACK_RUNTIME again; nothing was changed"
  (flock -n 9) 9>> "$MF_HOME/run/upgrade.lock" ||
    die "an mfupgrade or mfclean is running: run $MF_SCRIPT --$MICROFLACK_RUNTIME again once it is done; nothing was changed"
  log "switching the platform from the $from runtime to $MICROFLACK_RUNTIME"
fi

if [ "$MICROFLACK_RUNTIME" = docker ]; then
  "$MF_ADMIN/install/setup-host.sh" --with-docker
else
  "$MF_ADMIN/install/setup-host.sh"
fi

# This host's settings: saved once, never changed by later runs; a
# setting the file lacks (written by an older version) is added with the
# value it has now (its default, unless set in the environment).
conf="$MF_HOME/microflack.conf"
save_settings setup-all-in-one.sh MICROFLACK_IP LB_BIND LB_PORT LB_HTTPS_PORT ETCD_BIND \
  ETCD_PORT ETCD REDIS REDIS_CHANNEL LOGS_BIND LOGS_PORT INSTANCE_BIND \
  DB_HOST DB_PORT DB_ADMIN_CNF MF_DB_PREFIX
"$MF_ADMIN/install/make-secrets.sh"
# shellcheck source=../mfvars
source "$MF_ADMIN/mfvars"

ensure_etcd
ensure_mariadb
if loopback_host "${REDIS%:*}"; then
  ensure_redis "$REDIS"
else
  log "using the Redis at $REDIS"
fi

"$MF_ADMIN/bin/mfbuild" all ||
  die "mfbuild failed (its message above)${switching:+: no instance was replaced, the saved runtime is unchanged}"
# A platform of a version before the v3 registry: its instances are
# still in the v2 one. The bridge routes them from v3 until each has been
# replaced (README: "Upgrading a platform").
mapfile -t legacy < <(registry_v2_instances)
if [ ${#legacy[@]} -gt 0 ]; then
  log "${#legacy[@]} instance(s) registered in etcd's v2 registry: moving the platform to the v3 registry"
  start_registry_bridge
fi
if [ "$LB_HTTPS_PORT" != 0 ]; then "$MF_ADMIN/install/make-tls.sh"; fi
"$MF_ADMIN/bin/mflb" start
ensure_log_server
if [ ${#legacy[@]} -gt 0 ]; then
  for service in $(printf '%s\n' "${legacy[@]}" | cut -d ' ' -f 1 | sort -u); do
    if is_service "$service" && [ -n "$(instances "$service")" ]; then
      "$MF_ADMIN/bin/mfupgrade" roll "$service" ||
        die "the upgrade of $service stopped (mfupgrade's message above): run $MF_SCRIPT again to finish it"
    fi
  done
  finish_registry_upgrade
fi

# switch_stopped WHY: wait for the old instances being retired, then fail
# saying how to go on.
switch_stopped() {
  local pid
  for pid in "${retiring[@]}"; do wait "$pid" || true; done
  die "the switch to $MICROFLACK_RUNTIME stopped: $1; the $from instances not yet replaced keep serving and the saved runtime is unchanged. Run $MF_SCRIPT --$MICROFLACK_RUNTIME again to finish the switch, or $MF_SCRIPT --$from to go back"
}

# Every service runs in this runtime: an instance of the other one is
# replaced as mfupgrade roll replaces an old build (its replacement routed
# first, then it is retired while the next one starts), so as many
# instances serve throughout; a service with none gets one.
if [ -n "$switching" ]; then
  lock_upgrades "an mfupgrade or mfclean is running: run $MF_SCRIPT --$MICROFLACK_RUNTIME again once it is done"
fi
retiring=()
for service in $SERVICES; do
  current=()
  old=()
  for instance in $(instances "$service"); do
    if ! instance_alive "$instance"; then    # gone since (e.g. a reboot)
      forget_instance "$instance"
    elif [ "$(instance_runtime "$instance")" = "$MICROFLACK_RUNTIME" ]; then
      current+=("$instance")
    else
      old+=("$instance")
    fi
  done
  for instance in "${old[@]}"; do
    # Assigned first: a failure inside "$(...)" in log's argument would
    # not stop this script (set -e looks at log's own status). The
    # instance must not hold the upgrade lock (descriptor 9) for its life.
    started="$("$MF_ADMIN/bin/mfrun" "$service" 9>&-)" ||
      switch_stopped "$service did not start in $MICROFLACK_RUNTIME (mfrun's message above)"
    log "started $started to replace $instance"
    current+=("$started")
    retire "$instance" &
    retiring+=("$!")
  done
  if [ ${#current[@]} -eq 0 ]; then
    started="$("$MF_ADMIN/bin/mfrun" "$service" 9>&-)" ||
      die "$service did not start (mfrun's message above)"
    log "started $started"
  elif [ ${#old[@]} -eq 0 ]; then
    log "$service runs (${current[*]})"
  fi
done
failed=0
for pid in "${retiring[@]}"; do wait "$pid" || failed=1; done
[ "$failed" -eq 0 ] ||
  switch_stopped "a $from instance could not be stopped (see above)"
exec 9>&-

# The runtime is the one setting a later run may change (--docker or
# --native), saved once every instance runs in it.
sed -i '/^MICROFLACK_RUNTIME=/d' "$conf"
# shellcheck disable=SC2016 # the line expands when mfvars reads it
printf 'MICROFLACK_RUNTIME=${MICROFLACK_RUNTIME:-%s}\n' "$MICROFLACK_RUNTIME" >> "$conf"
if [ -n "$switching" ]; then
  log "switched to the $MICROFLACK_RUNTIME runtime"
fi

cat <<DONE

MicroFlack is running: open $([ "$LB_HTTPS_PORT" != 0 ] && echo "$LB_HTTPS" || echo "$LB")/ in a browser.
$([ "$LB_HTTPS_PORT" != 0 ] && [ -z "${TLS_CERT:-}" ] && echo "Its certificate is signed by this host's own CA, $MF_HOME/tls/ca.crt: trust it (README, HTTPS).")
Load the environment in your shell:   source $MF_ADMIN/mfvars
Then: mflogs (live logs), etcd-dump (registry), mfrun/mfkill <service>.
Load balancer statistics: $LB/stats (user $STATS_USER, password in $MF_HOME/secrets/secrets.env)
Logs over HTTP: http://$MICROFLACK_IP:$LOGS_PORT/logs (user $LOGS_USER, same file)
DONE
