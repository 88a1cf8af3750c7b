# shellcheck shell=bash
# Process lifecycle, in one place: waiting for a condition, finding a
# process by its pid file, stopping it. Sourced by common.sh.

# wait_until SECONDS COMMAND...: retry COMMAND until it succeeds.
wait_until() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.2
  done
}

# process_gone PID: the process has exited (a zombie counts as gone).
process_gone() {
  local state
  state="$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d ' ' -f 1)"
  [ -z "$state" ] || [ "$state" = Z ]
}

# running_pid PIDFILE PATTERN: print the pid recorded in PIDFILE if that
# process is alive (not a zombie) and its command line contains PATTERN,
# so that a stale pid file never designates an unrelated process.
running_pid() {
  local pid
  [ -r "$1" ] || return 1
  pid="$(head -n 1 "$1" | tr -cd '0-9')"
  [ -n "$pid" ] && ! process_gone "$pid" || return 1
  tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$2" ||
    return 1
  printf '%s\n' "$pid"
}

# stop_pid PID SECONDS SIGNAL...: send each signal in turn, then KILL,
# waiting up to SECONDS after each for the process to be gone.
stop_pid() {
  local pid="$1" seconds="$2" sig
  shift 2
  for sig in "$@" KILL; do
    kill -s "$sig" "$pid" 2>/dev/null || return 0
    wait_until "$seconds" process_gone "$pid" && return 0
  done
  return 1
}

# stop_pidfile FILE [SECONDS]: TERM the process, KILL it if it lingers;
# the file goes.
stop_pidfile() {
  local file="$1" pid
  [ -f "$file" ] || return 0
  pid="$(head -n 1 "$file" | tr -cd '0-9')"
  if [ -n "$pid" ]; then
    stop_pid "$pid" "${2:-10}" TERM || true
  fi
  rm -f "$file"
}
