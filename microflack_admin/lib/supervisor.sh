# shellcheck shell=bash
# The platform's supervisor: supervisord (PyPI's supervisor, in the admin
# tools' virtualenv), one per MF_HOME. It runs the platform's own
# long-running processes in the native runtime (HAProxy and the load
# balancer's watcher, the service instances) and starts again any that
# dies; in the Docker runtime Docker's restart policy does that for the
# containers. It runs while it has a program: the last one removed shuts
# it down. A program is a file $MF_HOME/supervisor/programs/<name>.conf.
# Source after common.sh and daemons.sh.

ADMIN_VENV="$MF_HOME/admin-venv"
SUPERVISOR_DIR="$MF_HOME/supervisor"
SUPERVISOR_CONF="$SUPERVISOR_DIR/supervisord.conf"
SUPERVISOR_SOCKET="$MF_HOME/run/supervisor.sock"
SUPERVISOR_LOG="$MF_HOME/logs/supervisord.log"

# The admin tools' virtualenv, from the wheelhouse (mfbuild common fills
# it; the other wheels are fetched from the package index if missing).
ensure_admin_venv() {
  local requirements="$MF_ADMIN/requirements.txt" fresh='' built installed
  built="$(cat "$WHEELHOUSE/.microflack_common.checksum" 2>/dev/null || true)"
  installed="$ADMIN_VENV/.microflack_common.checksum"
  if "$ADMIN_VENV/bin/python" -c 'import microflack_common, supervisor' \
      2>/dev/null; then
    # A newer shared package (after an update of this checkout) replaces
    # the one the tools run with.
    if [ -n "$built" ] && [ "$(cat "$installed" 2>/dev/null)" != "$built" ]; then
      log "updating microflack_common in $ADMIN_VENV"
      pip_from_wheelhouse "$ADMIN_VENV" --force-reinstall --no-deps \
        microflack_common ||
        die "cannot install microflack_common into $ADMIN_VENV"
      printf '%s\n' "$built" > "$installed"
    fi
    return 0
  fi
  compgen -G "$WHEELHOUSE/microflack_common-*.whl" >/dev/null ||
    die "no microflack_common wheel in $WHEELHOUSE: run mfbuild common"
  log "creating $ADMIN_VENV"
  [ -d "$ADMIN_VENV" ] || fresh=1
  make_venv "$ADMIN_VENV"
  if ! pip_from_wheelhouse "$ADMIN_VENV" -r "$requirements" 2>/dev/null; then
    log "fetching the admin tools' wheels into $WHEELHOUSE"
    if ! fill_wheelhouse "$requirements" ||
        ! pip_from_wheelhouse "$ADMIN_VENV" -r "$requirements"; then
      [ -z "$fresh" ] || rm -rf "$ADMIN_VENV"
      die "cannot install $requirements into $ADMIN_VENV"
    fi
  fi
  [ -z "$built" ] || printf '%s\n' "$built" > "$installed"
}

# supervisorctl ARGS...: the supervisor of this MF_HOME's control client.
supervisorctl() {
  "$ADMIN_VENV/bin/supervisorctl" -c "$SUPERVISOR_CONF" "$@"
}

supervisor_running() {
  [ -S "$SUPERVISOR_SOCKET" ] && supervisorctl pid >/dev/null 2>&1
}

# ensure_supervisor: the supervisor of this MF_HOME, started if needed.
ensure_supervisor() {
  ensure_admin_venv
  supervisor_running && return 0
  mkdir -p "$SUPERVISOR_DIR/programs" "$MF_HOME/run" "$MF_HOME/logs"
  chmod 700 "$SUPERVISOR_DIR"
  # %(here)s is supervisord's own syntax: the folder of this file.
  cat > "$SUPERVISOR_CONF" <<CONF
; Written by microflack_admin/lib/supervisor.sh: the supervisor of the
; platform in $MF_HOME.
[unix_http_server]
file=$SUPERVISOR_SOCKET
chmod=0700

[supervisord]
logfile=$SUPERVISOR_LOG
logfile_maxbytes=10MB
logfile_backups=2
pidfile=$MF_HOME/run/supervisord.pid
directory=$MF_HOME

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://$SUPERVISOR_SOCKET

[include]
files=%(here)s/programs/*.conf
CONF
  log "starting the supervisor (log: $SUPERVISOR_LOG)"
  "$ADMIN_VENV/bin/supervisord" -c "$SUPERVISOR_CONF" ||
    die "the supervisor did not start (see $SUPERVISOR_LOG)"
  wait_until 10 supervisor_running ||
    die "the supervisor did not start (see $SUPERVISOR_LOG)"
}

# supervise NAME: write the program NAME (its [program:NAME] section, on
# standard input, readable by the owner only: it may name secrets' files)
# and start it (also when it was there, stopped).
supervise() {
  local file="$SUPERVISOR_DIR/programs/$1.conf"
  ensure_supervisor
  (umask 077 && cat > "$file")
  supervisorctl update "$1" >/dev/null ||
    die "the supervisor cannot take $1 (see $SUPERVISOR_LOG)"
  case "$(program_state "$1")" in
    RUNNING|STARTING) ;;
    *) supervisorctl start "$1" >/dev/null 2>&1 || true ;;
  esac
}

# supervise_daemon NAME LOG STOPSIGNAL STOPWAITSECS COMMAND_LINE: a
# long-running program of the platform (started again whenever it exits),
# its output appended to LOG (the supervisor appends: a program that makes
# its output non-blocking would otherwise take O_APPEND off the file).
supervise_daemon() {
  supervise "$1" <<CONF
[program:$1]
command=$5
autorestart=true
startsecs=1
startretries=3
stopsignal=$3
stopwaitsecs=$4
redirect_stderr=true
stdout_logfile=$(conf_value "$2")
stdout_logfile_maxbytes=0
CONF
}

# program_state NAME: RUNNING, STARTING, BACKOFF, EXITED, FATAL, ... (empty
# when the supervisor does not know it).
program_state() {
  supervisor_running || return 0
  supervisorctl status "$1" 2>/dev/null | awk '{ print $2 }'
}

# program_pid NAME: the pid of a running program (fails otherwise).
program_pid() {
  local pid
  supervisor_running || return 1
  pid="$(supervisorctl pid "$1" 2>/dev/null)" || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] && [ "$pid" -gt 0 ] || return 1
  printf '%s\n' "$pid"
}

# unsupervise NAME: forget the program (after it stopped, or stop it: its
# stopsignal, then SIGKILL after its stopwaitsecs); the supervisor shuts
# down when it has no program left.
unsupervise() {
  local file="$SUPERVISOR_DIR/programs/$1.conf"
  if supervisor_running; then
    supervisorctl stop "$1" >/dev/null 2>&1 || true
    rm -f "$file"
    supervisorctl update "$1" >/dev/null 2>&1 || true
  fi
  rm -f "$file"
  shutdown_idle_supervisor
}

shutdown_idle_supervisor() {
  compgen -G "$SUPERVISOR_DIR/programs/*.conf" >/dev/null && return 0
  supervisor_running || return 0
  supervisorctl shutdown >/dev/null 2>&1 || true
  wait_until 10 bash -c "[ ! -S '$SUPERVISOR_SOCKET' ]" || true
}

# conf_value VALUE: VALUE for a supervisord configuration file, where "%"
# starts an expansion.
conf_value() { printf '%s' "${1//%/%%}"; }

# conf_command ARGS...: a command line for a program's command= (which
# the supervisor splits as a POSIX shell would, without running one):
# each argument in single quotes. Arguments are one line each.
conf_command() {
  local arg quoted=() quote="'"
  for arg in "$@"; do
    quoted+=("'${arg//$quote/$quote\\$quote$quote}'")
  done
  conf_value "${quoted[*]}"
}
