# shellcheck shell=bash
# The load balancer's parts, for mflb: HAProxy in master-worker mode, the
# watcher that renders its configuration from the registry
# (tools/lb_watcher.py) and the watchdog (tools/watchdog.py), each a
# program of the platform's supervisor, which starts a dead one again.
# Source after common.sh and supervisor.sh.

LB_DIR="$MF_HOME/lb"
LB_CONFIG="$LB_DIR/haproxy.cfg"
LB_SETTINGS="$LB_DIR/settings.json"
HAPROXY_PID="$LB_DIR/haproxy.pid"
WATCHER_PID="$LB_DIR/watcher.pid"
TOOLS_CHECKSUM="$LB_DIR/tools.checksum"
MASTER_SOCKET="$LB_DIR/master.sock"
STATS_SOCKET="$LB_DIR/admin.sock"
STATE_FILE="$LB_DIR/server-state"
LB_LOG="$MF_HOME/logs/lb.log"
WATCHER="$MF_ADMIN/tools/lb_watcher.py"
WATCHDOG="$MF_ADMIN/tools/watchdog.py"
# Their names under the supervisor.
HAPROXY_PROGRAM=lb-haproxy
WATCHER_PROGRAM=lb-watcher
WATCHDOG_PROGRAM=watchdog

haproxy_pid() { running_pid "$HAPROXY_PID" "$LB_CONFIG"; }

# haproxy_bin: HAProxy's path (/usr/sbin is not on every user's PATH).
haproxy_bin() {
  if command -v haproxy 2>/dev/null; then
    return 0
  fi
  [ -x /usr/sbin/haproxy ] ||
    die "'haproxy' is not installed: run microflack_admin/install/setup-host.sh"
  printf '%s\n' /usr/sbin/haproxy
}
watcher_pid() { running_pid "$WATCHER_PID" "$WATCHER"; }

tail_log() { tail -n 5 "$LB_LOG" 2>/dev/null | sed 's/^/  /' >&2; }


# write_settings FILE: what the watcher needs besides the registry (the
# stats password among it, so readable by the owner only), from lb_start's
# settings (bash's dynamic scope: its locals bind, port, threads, ...).
write_settings() {
  (
    umask 077
    LB_BIND="$bind" LB_PORT="$port" LB_THREADS="$threads" \
      LB_CLIENT_MAXCONN="$client_maxconn" LB_LOGINS_PER_MINUTE="$logins" \
      LB_REGISTRATIONS_PER_MINUTE="$registrations" \
      LB_POSTS_PER_MINUTE="$posts" LB_HTTPS_PORT="$https_port" \
      LB_TLS_CERT="$tls_cert" LB_HTTPS_REDIRECT="$https_redirect" \
      LB_INTERNAL_SOURCES="$internal_sources" \
      STATS_SOCKET="$STATS_SOCKET" STATE_FILE="$STATE_FILE" "$ADMIN_VENV/bin/python" -c '
import json, os, sys
env = os.environ
json.dump({"bind": env["LB_BIND"], "port": int(env["LB_PORT"]),
           "threads": int(env["LB_THREADS"]),
           "client_maxconn": int(env["LB_CLIENT_MAXCONN"]),
           "logins_per_minute": int(env["LB_LOGINS_PER_MINUTE"]),
           "registrations_per_minute": int(env["LB_REGISTRATIONS_PER_MINUTE"]),
           "posts_per_minute": int(env["LB_POSTS_PER_MINUTE"]),
           "https_port": int(env["LB_HTTPS_PORT"]),
           "tls_cert": env["LB_TLS_CERT"],
           "https_redirect": env["LB_HTTPS_REDIRECT"] == "1",
           "internal_sources": [s for s in env["LB_INTERNAL_SOURCES"].split(",") if s],
           "stats_user": env["STATS_USER"],
           "stats_password": env["STATS_PASSWORD"],
           "stats_socket": env["STATS_SOCKET"],
           "state_file": env["STATE_FILE"]}, sys.stdout)
' > "$1.new"
    mv "$1.new" "$1"
  )
}

watcher_args() {
  printf '%s\n' "$WATCHER" --etcd "$ETCD" --config "$LB_CONFIG" \
    --settings "$LB_SETTINGS" --haproxy "$HAPROXY" \
    --master-pid-file "$HAPROXY_PID"
}

start_haproxy() {
  local args output
  mapfile -t args < <(watcher_args)
  # The first configuration, from the registry as it is now.
  if ! output="$("$ADMIN_VENV/bin/python" "${args[@]}" --once 2>&1)"; then
    printf '%s\n' "$output" >> "$LB_LOG"
    die "cannot write HAProxy's configuration: ${output##*$'\n'}"
  fi
  printf '%s\n' "$output" >> "$LB_LOG"
  rm -f "$MASTER_SOCKET" "$STATS_SOCKET" "$HAPROXY_PID"
  # Under the supervisor, which starts it again if it dies (the
  # configuration the watcher keeps current is there). Its output goes to
  # the log through the supervisor, which appends: HAProxy makes its
  # standard output non-blocking, which would take O_APPEND off a file it
  # was given, and it would write over the watcher's lines. USR1 stops it
  # softly: the workers finish their connections first.
  supervise_daemon "$HAPROXY_PROGRAM" "$LB_LOG" USR1 15 \
    "$(conf_value "$HAPROXY") -W -S $(conf_value "$MASTER_SOCKET"),mode,600 -f $(conf_value "$LB_CONFIG") -p $(conf_value "$HAPROXY_PID")"
  if ! wait_started "$HAPROXY_PROGRAM" haproxy_ready; then
    tail_log
    unsupervise "$HAPROXY_PROGRAM"
    die "HAProxy did not start (log: $LB_LOG)"
  fi
  log "HAProxy started (master pid $(haproxy_pid))"
}

haproxy_ready() { haproxy_pid >/dev/null && [ -S "$STATS_SOCKET" ]; }

# wait_started PROGRAM COMMAND...: wait (10 s at most) until COMMAND
# succeeds, giving up as soon as PROGRAM, just started, has exited (the
# supervisor would try again: BACKOFF).
wait_started() {
  local program="$1" deadline=$((SECONDS + 10))
  shift
  until "$@" >/dev/null 2>&1; do
    case "$(program_state "$program")" in
      BACKOFF|FATAL|EXITED|'') return 1 ;;
    esac
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.1
  done
}

# lb_tools_checksum: identifies the code the watcher and the watchdog run
# (theirs and the shared package's).
lb_tools_checksum() {
  cat "$WATCHER" "$MF_ADMIN/tools/lb_config.py" "$WATCHDOG" \
    "$ADMIN_VENV/.microflack_common.checksum" 2>/dev/null |
    sha256sum | cut -d' ' -f1
}

# restart_lb_tools: the watcher and the watchdog started again on the
# code now here. HAProxy serves on meanwhile; the new watcher renders the
# registry and reloads it only if the configuration changed.
# restart_lb_tools WHY: the watcher and the watchdog, started again.
restart_lb_tools() {
  local old
  old="$(watcher_pid || true)"
  log "$1: starting the watcher and the watchdog again"
  supervisorctl restart "$WATCHER_PROGRAM" "$WATCHDOG_PROGRAM" >/dev/null ||
    die "cannot restart the watcher and the watchdog (log: $LB_LOG)"
  if ! wait_started "$WATCHER_PROGRAM" new_watcher_pid "$old"; then
    tail_log
    die "the watcher did not start again (log: $LB_LOG)"
  fi
  lb_tools_checksum > "$TOOLS_CHECKSUM"
  log "watcher started again (pid $(watcher_pid))"
}

new_watcher_pid() {
  local pid
  pid="$(watcher_pid)" && [ "$pid" != "$1" ]
}

start_watcher() {
  local args
  mapfile -t args < <(watcher_args)
  # Under the supervisor too: a dead watcher would leave HAProxy on a
  # configuration that no longer follows the registry.
  supervise_daemon "$WATCHER_PROGRAM" "$LB_LOG" TERM 10 \
    "$(conf_command "$ADMIN_VENV/bin/python" "${args[@]}" --pid-file "$WATCHER_PID")"
  if ! wait_started "$WATCHER_PROGRAM" watcher_pid; then
    tail_log
    unsupervise "$WATCHER_PROGRAM"
    return 1
  fi
  lb_tools_checksum > "$TOOLS_CHECKSUM"
  log "watcher started (pid $(watcher_pid))"
}

watchdog_pid() { program_pid "$WATCHDOG_PROGRAM"; }

# start_watchdog TIMEOUT INTERVAL START_GRACE: the watchdog under the
# supervisor, its lines in the load balancer's log; its settings are
# those of this call (a running one with others is started again).
start_watchdog() {
  supervise_daemon "$WATCHDOG_PROGRAM" "$LB_LOG" TERM 10 \
    "$(conf_command "$ADMIN_VENV/bin/python" "$WATCHDOG" --home "$MF_HOME" --timeout "$1" --interval "$2" --start-grace "$3")"
  if ! wait_started "$WATCHDOG_PROGRAM" watchdog_pid; then
    tail_log
    unsupervise "$WATCHDOG_PROGRAM"
    return 1
  fi
}

# check_seconds NAME VALUE: die unless VALUE is a number of seconds
# (above 0, at most a day).
check_seconds() {
  if ! [[ "$2" =~ ^[0-9]{1,5}(\.[0-9]{1,3})?$ ]] ||
      ! awk -v s="$2" 'BEGIN { exit !(s > 0 && s <= 86400) }'; then
    die "$1 must be a number of seconds (above 0, at most 86400), not '$2'"
  fi
}

# check_rate NAME VALUE: die unless VALUE is a number of requests a minute
# (0: no limit).
check_rate() {
  if ! [[ "$2" =~ ^[0-9]{1,6}$ ]] || [ "$2" -gt 100000 ]; then
    die "$1 must be a number of requests a minute (0-100000; 0: no limit), not '$2'"
  fi
}

lb_start() {
  local bind="${LB_BIND:-$MICROFLACK_IP}" port="${LB_PORT:-80}"
  local threads="${LB_THREADS:-1}" client_maxconn="${LB_CLIENT_MAXCONN:-500}"
  local logins="${LB_LOGINS_PER_MINUTE:-30}"
  local registrations="${LB_REGISTRATIONS_PER_MINUTE:-10}"
  local posts="${LB_POSTS_PER_MINUTE:-120}"
  local https_port="${LB_HTTPS_PORT:-443}"
  local tls_cert="${LB_TLS_CERT:-$MF_HOME/tls/lb.pem}"
  local https_redirect="${LB_HTTPS_REDIRECT:-1}"
  local internal_sources="${LB_INTERNAL_SOURCES:-127.0.0.1,$MICROFLACK_IP}"
  local watchdog_timeout="${WATCHDOG_TIMEOUT:-30}"
  local watchdog_interval="${WATCHDOG_INTERVAL:-1}"
  local start_grace="${START_TIMEOUT:-60}"
  local hpid wpid started_watcher=
  local started_haproxy=
  HAPROXY="$(haproxy_bin)"
  [ -n "${ETCD:-}" ] ||
    die "ETCD is not set: give the etcd client URL(s), e.g. ETCD=http://127.0.0.1:2379"
  if [ -z "${STATS_USER:-}" ] || [ -z "${STATS_PASSWORD:-}" ]; then
    die "STATS_USER and STATS_PASSWORD (credentials of the /stats page) are not set: run install/make-secrets.sh and source mfvars"
  fi
  if ! [[ "$port" =~ ^[0-9]{1,5}$ ]] || [ "$port" -lt 1 ] ||
      [ "$port" -gt 65535 ]; then
    die "LB_PORT must be a port number (1-65535), not '$port'"
  fi
  if ! [[ "$threads" =~ ^[0-9]{1,2}$ ]] || [ "$threads" -lt 1 ] ||
      [ "$threads" -gt 64 ]; then
    die "LB_THREADS must be a number of threads (1-64), not '$threads'"
  fi
  if ! [[ "$client_maxconn" =~ ^[0-9]{1,6}$ ]] ||
      [ "$client_maxconn" -lt 1 ] || [ "$client_maxconn" -gt 100000 ]; then
    die "LB_CLIENT_MAXCONN must be a number of connections (1-100000), not '$client_maxconn'"
  fi
  check_rate LB_LOGINS_PER_MINUTE "$logins"
  check_rate LB_REGISTRATIONS_PER_MINUTE "$registrations"
  check_rate LB_POSTS_PER_MINUTE "$posts"
  if ! [[ "$https_port" =~ ^[0-9]{1,5}$ ]] || [ "$https_port" -gt 65535 ] ||
      [ "$https_port" = "$port" ]; then
    die "LB_HTTPS_PORT must be a port number other than LB_PORT (or 0: no HTTPS), not '$https_port'"
  fi
  if [ "$https_port" != 0 ] && [ ! -r "$tls_cert" ]; then
    # The default certificate is made here if setup has not made it.
    if [ "$tls_cert" = "$MF_HOME/tls/lb.pem" ]; then
      "$MF_ADMIN/install/make-tls.sh" ||
        die "no TLS certificate could be made (install/make-tls.sh above)"
    else
      die "no TLS certificate at $tls_cert (LB_TLS_CERT): give a readable PEM file, or LB_HTTPS_PORT=0 for no HTTPS"
    fi
  fi
  [[ "$https_redirect" =~ ^[01]$ ]] ||
    die "LB_HTTPS_REDIRECT must be 1 (plain HTTP goes to HTTPS) or 0, not '$https_redirect'"
  if [ "$https_port" = 0 ]; then https_redirect=0; fi
  [[ "$internal_sources" =~ ^[0-9./,]+$ ]] ||
    die "LB_INTERNAL_SOURCES must be IPv4 addresses or networks, comma-separated, not '$internal_sources'"
  check_seconds WATCHDOG_TIMEOUT "$watchdog_timeout"
  check_seconds WATCHDOG_INTERVAL "$watchdog_interval"
  check_seconds START_TIMEOUT "$start_grace"
  hpid="$(haproxy_pid || true)"
  wpid="$(watcher_pid || true)"
  if [ -n "$hpid" ] && [ -n "$wpid" ] && watchdog_pid >/dev/null; then
    # Their code may have changed (an update of this checkout), or the
    # load balancer's settings (the watcher renders them into HAProxy's
    # configuration when it starts).
    ensure_admin_venv
    write_settings "$LB_SETTINGS.next"
    if ! cmp -s "$LB_SETTINGS.next" "$LB_SETTINGS"; then
      mv "$LB_SETTINGS.next" "$LB_SETTINGS"
      restart_lb_tools "the load balancer's settings changed"
      wpid="$(watcher_pid)"
    elif [ "$(cat "$TOOLS_CHECKSUM" 2>/dev/null)" != "$(lb_tools_checksum)" ]; then
      restart_lb_tools "the watcher's or the watchdog's code changed"
      wpid="$(watcher_pid)"
    fi
    rm -f "$LB_SETTINGS.next"
    # Its settings may have changed.
    start_watchdog "$watchdog_timeout" "$watchdog_interval" "$start_grace" ||
      die "the watchdog did not start (log: $LB_LOG)"
    log "already running (HAProxy master pid $hpid, watcher pid $wpid, watchdog pid $(watchdog_pid))"
    return 0
  fi
  ensure_admin_venv
  mkdir -p "$LB_DIR" "$(dirname "$LB_LOG")"
  chmod 700 "$LB_DIR"
  write_settings "$LB_SETTINGS"
  if [ -z "$hpid" ]; then
    start_haproxy
    started_haproxy=1
  fi
  if [ -z "$wpid" ]; then
    if ! start_watcher; then
      # No half-started load balancer: take back what this call started.
      if [ -n "$started_haproxy" ]; then
        unsupervise "$HAPROXY_PROGRAM"
      fi
      die "the watcher did not start (log: $LB_LOG)"
    fi
    started_watcher=1
  fi
  if ! start_watchdog "$watchdog_timeout" "$watchdog_interval" \
      "$start_grace"; then
    [ -z "$started_watcher" ] || unsupervise "$WATCHER_PROGRAM"
    [ -z "$started_haproxy" ] || unsupervise "$HAPROXY_PROGRAM"
    die "the watchdog did not start (log: $LB_LOG)"
  fi
  log "watchdog started (pid $(watchdog_pid); kills an instance unhealthy for ${watchdog_timeout} s)"
  log "load balancer on http://$bind:$port/ (statistics at /stats)"
}

# stop_program PROGRAM PIDFUNC SIGNAL...: stop one of the two, under the
# supervisor (first, so that it does not start it again) or, started by an
# older mflb, by its pid; succeeds if it was running.
stop_program() {
  local program="$1" pid_of="$2" pid was=
  shift 2
  [ -z "$(program_state "$program")" ] || was=1
  unsupervise "$program"
  if pid="$("$pid_of")"; then
    was=1
    stop_pid "$pid" 15 "$@" || die "cannot stop $program (pid $pid)"
  fi
  [ -n "$was" ]
}

lb_stop() {
  local stopped=
  if [ -n "$(program_state "$WATCHDOG_PROGRAM")" ]; then
    unsupervise "$WATCHDOG_PROGRAM"
    log "watchdog stopped"
    stopped=1
  fi
  if stop_program "$WATCHER_PROGRAM" watcher_pid TERM; then
    log "watcher stopped"
    stopped=1
  fi
  rm -f "$WATCHER_PID"
  # USR1: soft stop, the workers finish their connections first.
  if stop_program "$HAPROXY_PROGRAM" haproxy_pid USR1 TERM; then
    log "HAProxy stopped"
    stopped=1
  fi
  rm -f "$HAPROXY_PID" "$MASTER_SOCKET" "$STATS_SOCKET"
  [ -n "$stopped" ] || log "not running"
}

lb_status() {
  local pid status=0 listen
  if pid="$(haproxy_pid)"; then
    listen="$(sed -n 's/^ *bind \([^ ]*\).*/\1/p' "$LB_CONFIG" | head -n 1)"
    echo "haproxy: running (master pid $pid) on $listen"
  else
    echo "haproxy: not running"
    status=3
  fi
  if pid="$(watcher_pid)"; then
    echo "watcher: running (pid $pid)"
  else
    echo "watcher: not running"
    status=3
  fi
  if pid="$(watchdog_pid)"; then
    echo "watchdog: running (pid $pid)"
  else
    echo "watchdog: not running"
    status=3
  fi
  return "$status"
}

lb_reload() {
  local pid
  pid="$(watcher_pid)" || die "the watcher is not running: mflb start"
  kill -HUP "$pid"
  log "watcher $pid re-reads the registry and reloads HAProxy"
}
