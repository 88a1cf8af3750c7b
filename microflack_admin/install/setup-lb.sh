#!/usr/bin/env bash
# Make this host one of the two load balancers of a platform on several
# hosts (issue 18): HAProxy with its watcher and watchdog (mflb, following
# the registry's three members), on every address of this host, and
# Debian's keepalived holding the floating address (the chat's URL) on
# one of the two: VRRP version 3, unicast to the other load balancer,
# HAProxy's answer tracked. A second run changes nothing. Run it on both.
#
#   setup-lb.sh [--print]   --print: the keepalived.conf it would write
#
# Settings (environment, first run only; kept in $MF_HOME/microflack.conf):
#   MICROFLACK_IP   this host's address
#   ETCD            every member of the registry (setup-registry.sh prints it)
#   ETCD_TIMEOUT    1 (s)
#   LB_PEER         the other load balancer's address
#   LB_VIP          the floating address with its prefix (ADDRESS/24)
#   LB_PRIORITY     150 on the first, 100 on the other (the address starts
#                   on the first; neither takes it back: nopreempt)
#   LB_INTERFACE    the interface of MICROFLACK_IP (found if not given)
#   LB_ROUTER_ID    18 (VRRP's id: unique on the network)
#   LB_HTTPS_PORT   443 (0: plain HTTP only); its certificate comes from
#                   make-tls.sh (TLS_CERT: the operator's own)
#   LB_INTERNAL_SOURCES  the addresses not sent to HTTPS (default:
#                   127.0.0.1 and LB_VIP's network, where the services are)
# The secrets are the platform's: copy secrets.env to $MF_HOME/secrets
# (mode 600) before the first run (the /stats credentials).
set -euo pipefail
# shellcheck source=../lib/common.sh
source "$(dirname "$(readlink -f "$0")")/../lib/common.sh"
# shellcheck source=../lib/roles.sh
source "$MF_ADMIN/lib/roles.sh"

role_options "$@"
[[ "${LB_PEER:-}" =~ ^[0-9]+(\.[0-9]+){3}$ ]] ||
  die "LB_PEER must be the other load balancer's address, not '${LB_PEER:-}'"
[[ "${LB_VIP:-}" =~ ^[0-9]+(\.[0-9]+){3}/[0-9]{1,2}$ ]] ||
  die "LB_VIP must be the floating address with its prefix (ADDRESS/PREFIX), not '${LB_VIP:-}'"
priority="${LB_PRIORITY:-100}"
if ! [[ "$priority" =~ ^[0-9]{1,3}$ ]] || [ "$priority" -lt 1 ] ||
    [ "$priority" -gt 254 ]; then
  die "LB_PRIORITY must be 1 to 254, not '$priority'"
fi
interface="${LB_INTERFACE:-$(ip -o -4 addr show 2>/dev/null |
  awk -v a="$MICROFLACK_IP" 'index($4, a "/") == 1 {print $2; exit}')}"
[ -n "$interface" ] ||
  die "no interface has MICROFLACK_IP=$MICROFLACK_IP: set MICROFLACK_IP (or LB_INTERFACE)"
conf="$(keepalived_conf "microflack-$(hostname -s)" "$MICROFLACK_IP" \
  "$LB_PEER" "$LB_VIP" "$interface" "$priority" "${LB_ROUTER_ID:-18}" 0.5 \
  "$LB_PORT")"
if [ -n "$ROLE_PRINT" ]; then
  printf '%s\n' "$conf"
  exit 0
fi

[ "$(id -u)" -eq 0 ] || die "run as root: it configures keepalived"
[ -r "$MF_HOME/secrets/secrets.env" ] ||
  die "no $MF_HOME/secrets/secrets.env: copy the platform's secrets from its first host (mode 600)"
"$MF_ADMIN/install/setup-host.sh"
# HAProxy on every address of this host: it is already listening when
# the floating address arrives.
# The services of every host call it over plain HTTP: their network is
# not sent to HTTPS.
save_settings setup-lb.sh MICROFLACK_IP LB_PORT LB_HTTPS_PORT ETCD \
  ETCD_TIMEOUT LB_BIND=0.0.0.0 \
  "LB_INTERNAL_SOURCES=${LB_INTERNAL_SOURCES:-127.0.0.1,$LB_VIP}"
# shellcheck source=../mfvars
source "$MF_ADMIN/mfvars"
etcd_answers || die "no member of the registry answers at ETCD=$ETCD"
"$MF_ADMIN/bin/mfbuild" common
if [ "$LB_HTTPS_PORT" != 0 ]; then
  # The same certificate on both load balancers (copy $MF_HOME/tls from
  # the first), for the floating address too.
  TLS_NAMES="${TLS_NAMES:-${LB_VIP%/*}}" "$MF_ADMIN/install/make-tls.sh"
fi
"$MF_ADMIN/bin/mflb" start
if [ "$(cat /etc/keepalived/keepalived.conf 2>/dev/null)" != "$conf" ]; then
  mkdir -p /etc/keepalived
  printf '%s\n' "$conf" > /etc/keepalived/keepalived.conf
  log "wrote /etc/keepalived/keepalived.conf; restarting keepalived"
  systemctl enable keepalived >/dev/null 2>&1 || true
  systemctl restart keepalived
fi
log "this load balancer ($MICROFLACK_IP) routes the registry's services; the chat is at http://${LB_VIP%/*}/"
