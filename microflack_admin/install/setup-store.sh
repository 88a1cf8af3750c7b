#!/usr/bin/env bash
# Make this host the store of a platform on several hosts (issue 18):
# Debian's MariaDB and Redis, listening on this host's address too, and
# the services' database administrator, who may connect from the other
# hosts with a generated password. It also makes the platform's secrets
# (the first host to run: copy $MF_HOME/secrets to every load balancer
# and worker, mode 600). A second run changes nothing.
#
#   setup-store.sh [--print]   --print: the configuration it would write
#
# Settings (environment): MICROFLACK_IP (this host's address).
# It prints what the workers need: DB_HOST, DB_PORT, REDIS, and
# DB_ADMIN_CNF (the file $MF_HOME/secrets/db-admin.cnf: copy it along).
set -euo pipefail
# shellcheck source=../lib/common.sh
source "$(dirname "$(readlink -f "$0")")/../lib/common.sh"
# shellcheck source=../lib/daemons.sh
source "$MF_ADMIN/lib/daemons.sh"
# shellcheck source=../lib/roles.sh
source "$MF_ADMIN/lib/roles.sh"

role_options "$@"
! loopback_host "$MICROFLACK_IP" ||
  die "MICROFLACK_IP must be this host's address on the network the other hosts share, not $MICROFLACK_IP"

MARIADB_CONF=/etc/mysql/mariadb.conf.d/90-microflack.cnf
REDIS_CONF=/etc/redis/microflack.conf
mariadb_conf="# Written by microflack_admin/install/setup-store.sh: the other hosts
# reach the services' databases on this address.
[mysqld]
bind-address = 127.0.0.1,$MICROFLACK_IP"
# Redis carries the pushes; the other hosts reach it on this address (no
# password yet: issue 19).
redis_conf="# Written by microflack_admin/install/setup-store.sh.
bind 127.0.0.1 -::1 $MICROFLACK_IP
protected-mode no"
if [ -n "$ROLE_PRINT" ]; then
  printf '%s:\n%s\n\n%s:\n%s\n' "$MARIADB_CONF" "$mariadb_conf" \
    "$REDIS_CONF" "$redis_conf"
  exit 0
fi

[ "$(id -u)" -eq 0 ] || die "run as root: it configures MariaDB and Redis"
"$MF_ADMIN/install/setup-host.sh"
"$MF_ADMIN/install/make-secrets.sh"
# write_if_changed FILE TEXT SERVICE: the file, and the service restarted,
# when it differs.
write_if_changed() {
  if [ "$(cat "$1" 2>/dev/null)" != "$2" ]; then
    mkdir -p "$(dirname "$1")"
    printf '%s\n' "$2" > "$1"
    log "wrote $1; restarting $3"
    systemctl restart "$3"
  fi
}
write_if_changed "$MARIADB_CONF" "$mariadb_conf" mariadb
grep -qxF "include $REDIS_CONF" /etc/redis/redis.conf ||
  printf '\ninclude %s\n' "$REDIS_CONF" >> /etc/redis/redis.conf
write_if_changed "$REDIS_CONF" "$redis_conf" redis-server
ensure_mariadb
secrets="$(secrets_dir)"
add_secret "$secrets/secrets.env" DB_ADMIN_PASSWORD
password="$(sed -n 's/^DB_ADMIN_PASSWORD=//p' "$secrets/secrets.env")"
db_admin_sql mfadmin "$password" | mariadb_root
(umask 077 && db_admin_cnf "$MICROFLACK_IP" 3306 mfadmin "$password" \
  > "$secrets/db-admin.cnf")
log "the store runs on $MICROFLACK_IP; give the workers (and copy $secrets to them and to the load balancers):"
printf 'DB_HOST=%s\nDB_PORT=3306\nREDIS=%s:6379\nDB_ADMIN_CNF=%s\n' \
  "$MICROFLACK_IP" "$MICROFLACK_IP" "$MF_HOME/secrets/db-admin.cnf"
