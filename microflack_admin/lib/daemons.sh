# shellcheck shell=bash
# Starting the platform's stateful daemons when they are not running yet.
# Source after common.sh. Running ones are used as they are, never doubled.

# wait_until SECONDS COMMAND...: retry COMMAND until it succeeds.
wait_until() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.2
  done
}

mariadb_root() { mariadb --protocol=socket -uroot "$@"; }

ensure_mariadb() {
  need_cmd mariadb
  if mariadb_root -e 'SELECT 1' >/dev/null 2>&1; then
    return 0
  fi
  [ -x /usr/sbin/mariadbd ] ||
    die "MariaDB is not installed: run microflack_admin/install/setup-host.sh"
  log "starting MariaDB"
  mkdir -p /run/mysqld
  chown mysql:mysql /run/mysqld 2>/dev/null || true
  if [ ! -d /var/lib/mysql/mysql ]; then
    mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
  fi
  start-stop-daemon --start --oknodo --background \
    --exec /usr/sbin/mariadbd -- --user=mysql
  wait_until 30 mariadb_root -e 'SELECT 1' ||
    die "MariaDB did not start (see /var/log/mysql or the syslog)"
}

# ensure_redis HOST:PORT
ensure_redis() {
  local host="${1%:*}" port="${1##*:}"
  need_cmd redis-cli
  if redis-cli -h "$host" -p "$port" ping >/dev/null 2>&1; then
    return 0
  fi
  need_cmd redis-server
  log "starting Redis on $host:$port"
  mkdir -p "$MF_HOME/redis"
  redis-server --daemonize yes --bind "$host" --port "$port" \
    --save '' --appendonly no --dir "$MF_HOME/redis" \
    --logfile "$MF_HOME/redis/redis.log"
  wait_until 15 redis-cli -h "$host" -p "$port" ping ||
    die "Redis did not start (see $MF_HOME/redis/redis.log)"
}
