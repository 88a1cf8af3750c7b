#!/usr/bin/env bash
# Make this host a member of the platform's registry when the platform
# runs on several hosts (issue 18): Debian's etcd-server, one of three
# members on three hosts forming one cluster (v3 API only). It writes
# /etc/default/etcd (the service's settings) and restarts etcd when they
# changed; a second run changes nothing. Run it on the three registry
# hosts; each waits for the others, so start all three within a minute.
#
#   setup-registry.sh [--print]   --print: the settings it would write
#
# Settings (environment):
#   MICROFLACK_IP      this host's address (the members reach it there)
#   REGISTRY_MEMBERS   every member as name=address, comma-separated, the
#                      same on the three hosts (r1=ADDRESS1,r2=...,r3=...)
#   REGISTRY_NAME      this member's name (the one at MICROFLACK_IP)
#   ETCD_HEARTBEAT, ETCD_ELECTION   Raft's timing, ms (100, 500: a dead
#                      leader is replaced within about a second)
# Every other host is then given ETCD (printed at the end) and
# ETCD_TIMEOUT=1 (a client gives up on a member that lost its leader
# soon enough to carry on within 2 s).
set -euo pipefail
# shellcheck source=../lib/common.sh
source "$(dirname "$(readlink -f "$0")")/../lib/common.sh"
# shellcheck source=../lib/roles.sh
source "$MF_ADMIN/lib/roles.sh"

role_options "$@"
members="${REGISTRY_MEMBERS:-}"
[[ "$members" =~ ^[a-z0-9-]+=[0-9.]+(,[a-z0-9-]+=[0-9.]+)+$ ]] ||
  die "REGISTRY_MEMBERS must list every member as name=address, comma-separated (r1=ADDRESS1,r2=ADDRESS2,r3=ADDRESS3), not '$members'"
name="${REGISTRY_NAME:-}"
if [ -z "$name" ]; then
  for member in ${members//,/ }; do
    if [ "${member#*=}" = "$MICROFLACK_IP" ]; then name="${member%%=*}"; fi
  done
fi
if [ -z "$name" ] || [[ ",$members," != *",$name="* ]]; then
  die "this host ($MICROFLACK_IP) is not in REGISTRY_MEMBERS: set MICROFLACK_IP or REGISTRY_NAME"
fi
address=""
for member in ${members//,/ }; do
  if [ "${member%%=*}" = "$name" ]; then address="${member#*=}"; fi
done

settings="$(etcd_member_settings "$name" "$address" "$members" \
  microflack "/var/lib/etcd/microflack" "${ETCD_HEARTBEAT:-100}" \
  "${ETCD_ELECTION:-500}" |
  while IFS= read -r setting; do
    flag="${setting%%=*}"
    printf 'ETCD_%s="%s"\n' "$(tr 'a-z-' 'A-Z_' <<< "$flag")" "${setting#*=}"
  done)"
settings="# Written by microflack_admin/install/setup-registry.sh: member $name
# of the MicroFlack registry.
ETCD_ENABLE_V2=\"false\"
$settings"
if [ -n "$ROLE_PRINT" ]; then
  printf '%s\n' "$settings"
  exit 0
fi

[ "$(id -u)" -eq 0 ] || die "run as root: it configures the etcd service"
"$MF_ADMIN/install/setup-host.sh"
mkdir -p /var/lib/etcd/microflack
chown etcd:etcd /var/lib/etcd/microflack 2>/dev/null || true
if [ "$(cat /etc/default/etcd 2>/dev/null)" != "$settings" ]; then
  [ ! -f /etc/default/etcd ] || cp /etc/default/etcd /etc/default/etcd.before-microflack
  printf '%s\n' "$settings" > /etc/default/etcd
  log "wrote /etc/default/etcd; restarting etcd (it waits for a quorum of members)"
  systemctl enable etcd >/dev/null 2>&1 || true
  systemctl restart --no-block etcd
fi
log "member $name at $address; give every other host:"
printf 'ETCD=%s\nETCD_TIMEOUT=1\n' "$(members_client_urls "$members")"
