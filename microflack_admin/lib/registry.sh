# shellcheck shell=bash
# The registry from the shell: etcd's v3 API over its JSON gateway (keys
# and values are base64 in the JSON). Sourced by common.sh.
# Every call has a time limit and tries each member of $ETCD in turn.

# Seconds one member has to answer one call.
ETCD_CALL_TIMEOUT="${ETCD_CALL_TIMEOUT:-3}"

etcd_b64() { printf '%s' "$1" | base64 -w0; }

# etcd_prefix_end PREFIX/: the range end selecting every key below a
# prefix that ends with "/" ("/" + 1 is "0").
etcd_prefix_end() { printf '%s0' "${1%/}"; }

# etcd_members: the members of $ETCD (comma-separated URLs), one a line,
# without a trailing /.
etcd_members() { tr ',' '\n' <<< "$ETCD" | sed 's|/*$||; /^$/d'; }

# etcd_call RPC JSON: POST one v3 RPC (kv/range, kv/put...) to the first
# member of $ETCD that answers and print its answer. Fails with curl's
# status of the last member tried: 7 none could be reached, 28 none
# answered in time, 22 etcd refused the request.
etcd_call() {
  local member rc=7 answer
  for member in $(etcd_members); do
    if answer="$(curl -sSf --max-time "$ETCD_CALL_TIMEOUT" -X POST \
        -H 'Content-Type: application/json' -d "$2" \
        "$member/v3/$1" 2>/dev/null)"; then
      printf '%s\n' "$answer"
      return 0
    else
      rc=$?
    fi
  done
  return "$rc"
}

# etcd_why STATUS: etcd_call's failure in words.
etcd_why() {
  case "$1" in
    7) echo "cannot connect" ;;
    28) echo "no answer within $ETCD_CALL_TIMEOUT s" ;;
    22) echo "etcd refused the request" ;;
    *) echo "curl failed (exit $1)" ;;
  esac
}

# etcd_answers: whether a member of $ETCD answers the v3 API.
etcd_answers() { etcd_call kv/range '{"key": "AA==", "count_only": true}' >/dev/null; }

# etcd_has KEY: whether the key exists.
etcd_has() {
  etcd_call kv/range "{\"key\": \"$(etcd_b64 "$1")\", \"count_only\": true}" |
    grep -q '"count":"[1-9]'
}

# etcd_put KEY VALUE: write a key (no lease: it stays until deleted).
etcd_put() {
  etcd_call kv/put "{\"key\": \"$(etcd_b64 "$1")\", \"value\": \"$(etcd_b64 "$2")\"}" >/dev/null
}

# etcd_delete KEY [prefix]: delete a key, or with "prefix" every key below
# KEY/ (a key already gone is no failure); otherwise says why on stderr
# and fails.
etcd_delete() {
  local body rc=0
  body="\"key\": \"$(etcd_b64 "$1")\""
  if [ "${2:-}" = prefix ]; then
    body+=", \"range_end\": \"$(etcd_b64 "$(etcd_prefix_end "$1")")\""
  fi
  etcd_call kv/deleterange "{$body}" >/dev/null || rc=$?
  [ "$rc" -eq 0 ] && return 0
  log "cannot delete $1 from the registry at $ETCD: $(etcd_why "$rc")"
  return 1
}

# deregister SERVICE INSTANCE: remove the instance's upstream key; fails,
# saying so, when the registry could not be told. While the registry
# moves to v3 (the bridge runs), its v2 key goes too.
deregister() {
  if [ -f "$REGISTRY_BRIDGE_PID" ]; then
    etcd_v2_delete "/services/$1/upstream/$2"
  fi
  etcd_delete "/services/$1/upstream/$2"
}

registered() { etcd_has "/services/$1/upstream/$2" 2>/dev/null; }

# -- moving a platform of an earlier version off the v2 API -------------

REGISTRY_BRIDGE_PID="$MF_HOME/run/registry-bridge.pid"

# registry_v2_instances: "SERVICE INSTANCE" per instance registered in
# etcd's v2 registry (by a version before the v3 one); nothing when the
# v2 API is off or holds none.
registry_v2_instances() {
  local member body
  for member in $(etcd_members); do
    if body="$(curl -sSf --max-time "$ETCD_CALL_TIMEOUT" \
        "$member/v2/keys/services?recursive=true" 2>/dev/null)"; then
      grep -o '"key":"/services/[^"/]*/upstream/[^"/]*"' <<< "$body" |
        sed 's|^"key":"/services/\([^/]*\)/upstream/\([^"]*\)"$|\1 \2|' || true
      return 0
    fi
  done
}

# etcd_v2_delete KEY: delete a key of the v2 registry (quietly: it may be
# gone, or v2 off).
etcd_v2_delete() {
  local member
  for member in $(etcd_members); do
    curl -sS --max-time "$ETCD_CALL_TIMEOUT" -X DELETE -o /dev/null \
      "$member/v2/keys$1" 2>/dev/null && return 0
  done
  return 0
}

# start_registry_bridge: the bridge (tools/registry_bridge.py) in the
# background until no instance is left in the v2 registry; returns once
# it has mirrored the v2 registry into v3.
start_registry_bridge() {
  local ready="$MF_HOME/run/registry-bridge.ready" pid
  ensure_admin_venv
  mkdir -p "$MF_HOME/run" "$MF_HOME/logs"
  if pid="$(running_pid "$REGISTRY_BRIDGE_PID" registry_bridge.py)"; then
    log "the registry bridge runs already (pid $pid)"
    return 0
  fi
  rm -f "$ready"
  setsid "$ADMIN_VENV/bin/python" "$MF_ADMIN/tools/registry_bridge.py" \
    --etcd "$ETCD" --ready-file "$ready" \
    < /dev/null >> "$MF_HOME/logs/registry-bridge.log" 2>&1 &
  echo $! > "$REGISTRY_BRIDGE_PID"
  wait_until 30 test -f "$ready" ||
    die "the registry bridge did not start (see $MF_HOME/logs/registry-bridge.log)"
  log "registry bridge started: the v2 registrations are routed from v3"
}

# finish_registry_upgrade: once every instance of the v2 registry has
# been replaced, wait for the bridge to end, then start this host's etcd
# again without the v2 API.
finish_registry_upgrade() {
  local pid deadline=$((SECONDS + 90))
  if pid="$(running_pid "$REGISTRY_BRIDGE_PID" registry_bridge.py)"; then
    until process_gone "$pid"; do
      [ $SECONDS -lt $deadline ] ||
        die "instances are still registered in etcd's v2 registry: $(registry_v2_instances | tr '\n' ' ')(see $MF_HOME/logs/registry-bridge.log); run $MF_SCRIPT again"
      sleep 0.2
    done
  fi
  rm -f "$REGISTRY_BRIDGE_PID" "$MF_HOME/run/registry-bridge.ready"
  if pid="$(running_pid "$MF_HOME/run/etcd.pid" etcd)" &&
      tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q -- '--enable-v2'; then
    log "starting etcd again without the v2 API"
    stop_etcd
    ensure_etcd
  fi
  log "the registry is on etcd's v3 API"
}
