# shellcheck shell=bash
# Starting the platform's stateful daemons when they are not running yet.
# Source after common.sh. Running ones are used as they are, never doubled.

# mariadb_root ARGS...: the mariadb client as the database's administrator:
# as DB_ADMIN_CNF says (a client option file: host, port or socket, user,
# password), else as root: on the local server's socket for this host's
# system MariaDB (local_default_mariadb), over TCP to DB_HOST:DB_PORT
# (without a password) for any other.
mariadb_root() {
  if [ -n "${DB_ADMIN_CNF:-}" ]; then
    mariadb --defaults-extra-file="$DB_ADMIN_CNF" "$@"
  elif local_default_mariadb; then
    mariadb --protocol=socket -uroot "$@"
  else
    mariadb --protocol=tcp -h "$DB_HOST" -P "$DB_PORT" -uroot "$@"
  fi
}

# loopback_host HOST: HOST is this host's loopback (127.x, ::1, localhost).
loopback_host() {
  case "$1" in 127.*|::1|localhost) return 0 ;; *) return 1 ;; esac
}

# db_client_hosts: the hosts the services' database users may connect
# from: this host's loopback names when the database is on it (and its
# loopback address DB_HOST, the source of a connection to it), any host
# (with the password) when it is elsewhere.
db_client_hosts() {
  if loopback_host "$DB_HOST"; then
    printf '%s\n' localhost 127.0.0.1
    case "$DB_HOST" in localhost|127.0.0.1) ;; *) printf '%s\n' "$DB_HOST" ;; esac
  else
    printf '%s\n' '%'
  fi
}

# local_default_mariadb: the services' database is the one these scripts
# may start: this host's system MariaDB, on its default port, reached as
# root on its socket.
local_default_mariadb() {
  loopback_host "${DB_HOST:-127.0.0.1}" && [ "${DB_PORT:-3306}" = 3306 ] &&
    [ -z "${DB_ADMIN_CNF:-}" ]
}

# ensure_mariadb: the services' MariaDB answers the administrator; this
# host's system MariaDB is started if it is the one and does not run yet,
# any other (DB_HOST, DB_PORT, DB_ADMIN_CNF) must run already.
ensure_mariadb() {
  need_cmd mariadb
  if [ -n "${DB_ADMIN_CNF:-}" ] && [ ! -r "$DB_ADMIN_CNF" ]; then
    die "DB_ADMIN_CNF=$DB_ADMIN_CNF: no such readable file (a MariaDB client option file)"
  fi
  if mariadb_root -e 'SELECT 1' >/dev/null 2>&1; then
    return 0
  fi
  if ! local_default_mariadb; then
    local how="as root without a password: give DB_ADMIN_CNF, a client option file with the user and password"
    if [ -n "${DB_ADMIN_CNF:-}" ]; then how="as DB_ADMIN_CNF=$DB_ADMIN_CNF says"; fi
    die "no MariaDB answers the administrator at DB_HOST=${DB_HOST:-} DB_PORT=${DB_PORT:-} ($how); these scripts start only this host's system MariaDB (port 3306)"
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
    --logfile "$MF_HOME/redis/redis.log" --pidfile "$MF_HOME/redis/redis.pid"
  wait_until 15 redis-cli -h "$host" -p "$port" ping ||
    die "Redis did not start (see $MF_HOME/redis/redis.log)"
}

# ensure_etcd: an etcd answering the v3 API at $ETCD; starts a single-node
# one on 127.0.0.1:$ETCD_PORT with its data in $MF_HOME/etcd if none
# answers. It serves v3 only, as every supported etcd does.
ensure_etcd() {
  need_cmd curl base64
  if etcd_answers 2>/dev/null; then
    return 0
  fi
  local local_url="http://$ETCD_BIND:$ETCD_PORT" advertised="$ETCD_BIND"
  case "$ETCD" in
    "$local_url") ;;
    *) die "no etcd answers at ETCD=$ETCD (only a local one at $local_url, ETCD_BIND:ETCD_PORT, is started by these scripts)" ;;
  esac
  # Listening on every address, it is reached at the host's.
  [ "$ETCD_BIND" != 0.0.0.0 ] || advertised="$MICROFLACK_IP"
  [ -x /usr/bin/etcd ] || need_cmd etcd
  local peer_port=$((ETCD_PORT + 1)) binary
  binary="$(command -v etcd || echo /usr/bin/etcd)"
  log "starting etcd on $ETCD_BIND:$ETCD_PORT"
  mkdir -p "$MF_HOME/etcd" "$MF_HOME/logs" "$MF_HOME/run"
  # A single member: its peer port stays on loopback.
  setsid "$binary" --name microflack \
    --data-dir "$MF_HOME/etcd/data" \
    --listen-client-urls "$local_url" \
    --advertise-client-urls "http://$advertised:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "microflack=http://127.0.0.1:$peer_port" \
    < /dev/null >> "$MF_HOME/logs/etcd.log" 2>&1 &
  echo $! > "$MF_HOME/run/etcd.pid"
  wait_until 20 etcd_answers ||
    die "etcd did not start (see $MF_HOME/logs/etcd.log)"
}

stop_etcd() { stop_pidfile "$MF_HOME/run/etcd.pid"; }

logs_answer() {
  curl -sS --max-time 2 -o /dev/null -w '%{http_code}' \
    "http://$MICROFLACK_IP:$LOGS_PORT/logs?follow=0&lines=0" 2>/dev/null |
    grep -q 401
}

# ensure_log_server: the consolidated log over HTTP on $LOGS_BIND:$LOGS_PORT.
ensure_log_server() {
  local pidfile="$MF_HOME/run/log_server.pid"
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    return 0
  fi
  if [ -z "${LOGS_USER:-}" ] || [ -z "${LOGS_PASSWORD:-}" ]; then
    die "LOGS_USER and LOGS_PASSWORD are not set: run install/make-secrets.sh"
  fi
  mkdir -p "$MF_HOME/run" "$MF_HOME/logs"
  log "serving the logs on http://$MICROFLACK_IP:$LOGS_PORT/logs (listening on ${LOGS_BIND:-$MICROFLACK_IP})"
  LOGS_USER="$LOGS_USER" LOGS_PASSWORD="$LOGS_PASSWORD" setsid python3 \
    "$MF_ADMIN/tools/log_server.py" --bind "${LOGS_BIND:-$MICROFLACK_IP}:$LOGS_PORT" \
    --log "$MF_HOME/logs/microflack.log" \
    < /dev/null >> "$MF_HOME/logs/log_server.log" 2>&1 &
  echo $! > "$pidfile"
  wait_until 10 logs_answer ||
    die "the log server did not start (see $MF_HOME/logs/log_server.log)"
}

stop_log_server() { stop_pidfile "$MF_HOME/run/log_server.pid"; }

# stop_redis: only a Redis these scripts started (never a system one).
stop_redis() {
  local pidfile="$MF_HOME/redis/redis.pid"
  [ -f "$pidfile" ] && stop_pidfile "$pidfile"
  return 0
}
