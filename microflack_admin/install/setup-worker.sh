#!/usr/bin/env bash
# Start this host's share of a platform of several hosts (issue 18): a
# worker runs service instances, registered with this host's address in
# the registry the other hosts run, routed by their load balancers. It
# builds every service (skipped when built), serves its log stream, forgets
# the instances gone since (a reboot) and starts one instance of each
# service that has none here. Running it again changes nothing: it is what
# a worker runs when it boots (a systemd unit, or mfcluster revive-host).
#
#   setup-worker.sh
#
# Settings (environment, first run only; kept in $MF_HOME/microflack.conf):
#   MICROFLACK_IP   this host's address (its instances register it)
#   INSTANCE_BIND, LOGS_BIND (MICROFLACK_IP)
#   ETCD            every member of the registry, comma-separated
#   ETCD_TIMEOUT    seconds before a registry call tries the next member
#   REGISTRATION_TTL, REGISTRATION_REFRESH   the instances' lease (50 s,
#                   renewed every 15 s): how long an instance cut off from
#                   the registry stays routed
#   LB_URL          the chat's URL (the load balancers' floating address)
#   REDIS, DB_HOST, DB_PORT, DB_ADMIN_CNF   the store host's
#   HOST_ID         this host's name in instance ids (hostname -s)
#   MF_DB_PREFIX, REDIS_CHANNEL, LOGS_PORT  as on every host
# The secrets are the platform's, not this host's: copy secrets.env and
# db-passwords.env from the first host to $MF_HOME/secrets (mode 600)
# before the first run; this script never makes new ones.
set -euo pipefail
# shellcheck source=../lib/common.sh
source "$(dirname "$(readlink -f "$0")")/../lib/common.sh"
# shellcheck source=../lib/daemons.sh
source "$MF_ADMIN/lib/daemons.sh"
# shellcheck source=../lib/instances.sh
source "$MF_ADMIN/lib/instances.sh"

[ $# -eq 0 ] || usage "" "settings come from the environment (see the script's header)"
[ "$MICROFLACK_RUNTIME" = native ] ||
  die "a worker of several hosts runs the native runtime, not '$MICROFLACK_RUNTIME'"
for file in secrets.env db-passwords.env; do
  [ -r "$MF_HOME/secrets/$file" ] ||
    die "no $MF_HOME/secrets/$file: copy the platform's secrets from its first host (mode 600)"
done
[ -n "${LB_URL:-}" ] ||
  die "LB_URL is not set: the chat's URL, the load balancers' floating address"

save_settings setup-worker.sh MICROFLACK_IP INSTANCE_BIND LOGS_BIND \
  LOGS_PORT ETCD ETCD_TIMEOUT REGISTRATION_TTL REGISTRATION_REFRESH LB_URL \
  REDIS REDIS_CHANNEL DB_HOST DB_PORT DB_ADMIN_CNF MF_DB_PREFIX HOST_ID
# shellcheck source=../mfvars
source "$MF_ADMIN/mfvars"

need_cmd curl
etcd_answers || die "no member of the registry answers at ETCD=$ETCD"
"$MF_ADMIN/bin/mfbuild" all || die "mfbuild failed (its message above)"
ensure_log_server

# The services with no instance here, started at once (a host that boots
# is back in rotation when its slowest instance is).
# The supervisor first: the instances' mfrun would each start one.
ensure_supervisor
outputs="$(mktemp -d)"
trap 'rm -rf "$outputs"' EXIT
starting=()
for service in $SERVICES; do
  running=()
  for instance in $(instances "$service"); do
    if instance_alive "$instance"; then
      running+=("$instance")
    else
      forget_instance "$instance"    # gone since (the host went down)
    fi
  done
  if [ ${#running[@]} -eq 0 ]; then
    "$MF_ADMIN/bin/mfrun" "$service" > "$outputs/$service" 2>&1 &
    starting+=("$service:$!")
  else
    log "$service runs (${running[*]})"
  fi
done
failed=()
for entry in "${starting[@]}"; do
  service="${entry%%:*}"
  if wait "${entry#*:}"; then
    log "started $(tail -n 1 "$outputs/$service")"
  else
    sed "s/^/  /" "$outputs/$service" >&2
    failed+=("$service")
  fi
done
[ ${#failed[@]} -eq 0 ] ||
  die "${failed[*]} did not start (mfrun's messages above)"
log "this worker ($MICROFLACK_IP) runs its instances; the chat is at $LB/"
