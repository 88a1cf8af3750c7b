# shellcheck shell=bash
# A cluster of hosts on this machine (issue 18): each host a network
# namespace with `lo` and an `eth0`, one end of a veth pair whose other end
# is on a bridge of the root namespace; addresses from a private /24 that
# exists only on that bridge (the bridge has .1, host K has .K+1). Sourced
# by bin/mfcluster, after common.sh.
#
# Names derive from the cluster's name, so that clusters coexist: the
# namespaces NAME-h1..., the root ends of the veths NAME-v1..., the bridge
# NAME-br (an interface name has at most 15 characters). What the cluster
# keeps is in $MF_HOME/cluster/NAME: cluster.conf (its hosts and subnet),
# one folder per host (data), logs/ and run/ (pid files). The home exists
# as long as any part of the cluster does (made first, removed last), and
# the bridge carries the cluster's name as its alias: `down` touches only
# a cluster that one of them says is ours.
#
# Roles by host: registry (1-3: an etcd member each), lb (4-5), store (6),
# worker (7 and up). Only the registry's processes run today.

CLUSTER_NAME="${CLUSTER_NAME:-mf}"
CLUSTER_SUBNET="${CLUSTER_SUBNET:-10.213.37.0/24}"
# etcd's Raft timing on the cluster (ms): a follower that hears nothing
# from the leader for an election timeout (raft draws it between one and
# two of these) starts an election, so a dead leader is replaced within
# about 1 s; etcd's own default (1000) would take up to 2 s.
CLUSTER_ETCD_HEARTBEAT="${CLUSTER_ETCD_HEARTBEAT:-100}"
CLUSTER_ETCD_ELECTION="${CLUSTER_ETCD_ELECTION:-500}"
# The time limit the cluster's registry clients get (ETCD_TIMEOUT): a
# write sent to a follower while the dead leader is not yet replaced is
# held by etcd for 5 s and more, so a client must give up on that member
# and try the next one soon enough to carry on within 2 s.
CLUSTER_CLIENT_TIMEOUT=1

CLUSTER_MIN_HOSTS=7
CLUSTER_MAX_HOSTS=253       # .2 to .254 of the /24
CLUSTER_REGISTRY_HOSTS=3
CLUSTER_ETCD_CLIENT_PORT=2379
CLUSTER_ETCD_PEER_PORT=2380
CLUSTER_ETCD_BINARY="/usr/bin/etcd"

# cluster_select NAME: check the name and set the cluster's paths and
# interface names.
cluster_select() {
  [[ "$1" =~ ^[a-z][a-z0-9]{0,9}$ ]] ||
    die "a cluster's name is 1 to 10 lowercase letters and digits, starting with a letter (it prefixes interface names of at most 15 characters), not '$1'"
  CLUSTER="$1"
  CLUSTER_HOME="$MF_HOME/cluster/$CLUSTER"
  CLUSTER_CONF="$CLUSTER_HOME/cluster.conf"
  CLUSTER_BRIDGE="$CLUSTER-br"
  CLUSTER_ALIAS="microflack-cluster:$CLUSTER"
  CLUSTER_HOSTS=""
  CLUSTER_PREFIX=""
}

# subnet_prefix CIDR: the first three octets of a private /24 (A.B.C.0/24).
subnet_prefix() {
  local a b c
  [[ "$1" =~ ^([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.0/24$ ]] ||
    die "CLUSTER_SUBNET must be a /24 written A.B.C.0/24, not '$1'"
  a="${BASH_REMATCH[1]}" b="${BASH_REMATCH[2]}" c="${BASH_REMATCH[3]}"
  if [ "$a" -gt 255 ] || [ "$b" -gt 255 ] || [ "$c" -gt 255 ]; then
    die "CLUSTER_SUBNET '$1' is not an address"
  fi
  if ! { [ "$a" -eq 10 ] ||
      { [ "$a" -eq 172 ] && [ "$b" -ge 16 ] && [ "$b" -le 31 ]; } ||
      { [ "$a" -eq 192 ] && [ "$b" -eq 168 ]; }; }; then
    die "CLUSTER_SUBNET must be private (10/8, 172.16/12, 192.168/16), not '$1'"
  fi
  printf '%s.%s.%s\n' "$a" "$b" "$c"
}

# cluster_exists: whether anything of the cluster is left: its home, or
# a bridge of its name that carries its alias.
cluster_exists() {
  [ -d "$CLUSTER_HOME" ] || bridge_is_ours
}

bridge_is_ours() {
  ip -o link show dev "$CLUSTER_BRIDGE" 2>/dev/null |
    grep -qF "alias $CLUSTER_ALIAS"
}

# cluster_load: read cluster.conf (HOSTS, SUBNET) of an existing cluster;
# fails when there is none.
cluster_load() {
  [ -r "$CLUSTER_CONF" ] || return 1
  CLUSTER_HOSTS="$(sed -n 's/^HOSTS=\([0-9]*\)$/\1/p' "$CLUSTER_CONF")"
  local subnet
  subnet="$(sed -n 's/^SUBNET=\(.*\)$/\1/p' "$CLUSTER_CONF")"
  if [ -z "$CLUSTER_HOSTS" ] || [ -z "$subnet" ]; then
    die "$CLUSTER_CONF is damaged: run '$MF_SCRIPT down --name $CLUSTER' and up again"
  fi
  CLUSTER_SUBNET_USED="$subnet"
  CLUSTER_PREFIX="$(subnet_prefix "$subnet")"
  # The Raft timing the members were created with (every member the same).
  CLUSTER_ETCD_HEARTBEAT="$(sed -n 's/^ETCD_HEARTBEAT=\([0-9]*\)$/\1/p' "$CLUSTER_CONF")"
  CLUSTER_ETCD_ELECTION="$(sed -n 's/^ETCD_ELECTION=\([0-9]*\)$/\1/p' "$CLUSTER_CONF")"
  CLUSTER_ETCD_HEARTBEAT="${CLUSTER_ETCD_HEARTBEAT:-100}"
  CLUSTER_ETCD_ELECTION="${CLUSTER_ETCD_ELECTION:-500}"
}

# need_cluster: load the cluster or die saying there is none.
need_cluster() {
  cluster_load ||
    die "no cluster '$CLUSTER' here (MF_HOME=$MF_HOME): create it with '$MF_SCRIPT up --name $CLUSTER'"
}

# host_count N: N as a number of hosts (dies unless it is one).
host_count() {
  if ! [[ "$1" =~ ^[0-9]{1,3}$ ]] || [ "$((10#$1))" -lt "$CLUSTER_MIN_HOSTS" ] ||
      [ "$((10#$1))" -gt "$CLUSTER_MAX_HOSTS" ]; then
    die "--hosts takes a number from $CLUSTER_MIN_HOSTS to $CLUSTER_MAX_HOSTS, not '$1'"
  fi
  printf '%s\n' "$((10#$1))"
}

host_ns() { printf '%s-h%s\n' "$CLUSTER" "$1"; }
host_veth() { printf '%s-v%s\n' "$CLUSTER" "$1"; }
host_addr() { printf '%s.%s\n' "$CLUSTER_PREFIX" "$(($1 + 1))"; }
host_dir() { printf '%s/h%s\n' "$CLUSTER_HOME" "$1"; }

# host_role K: what host K is for.
host_role() {
  if [ "$1" -le "$CLUSTER_REGISTRY_HOSTS" ]; then echo registry
  elif [ "$1" -le 5 ]; then echo lb
  elif [ "$1" -eq 6 ]; then echo store
  else echo worker
  fi
}

# host_number HOST: the number of a host named hK, K or NAME-hK (dies
# unless the cluster has it).
host_number() {
  local k="$1"
  k="${k#"$CLUSTER-"}"
  k="${k#h}"
  if ! [[ "$k" =~ ^[1-9][0-9]{0,2}$ ]] || [ "$k" -gt "$CLUSTER_HOSTS" ]; then
    die "no host '$1' in cluster '$CLUSTER' (hosts: h1 to h$CLUSTER_HOSTS)"
  fi
  printf '%s\n' "$k"
}

ns_exists() { [ -e "/run/netns/$1" ]; }

# cluster_namespaces: the namespaces named like the cluster's hosts.
cluster_namespaces() {
  ip netns list 2>/dev/null | awk '{print $1}' |
    grep -E "^$CLUSTER-h[0-9]+\$" || true
}

# check_subnet_free PREFIX: die when the root namespace has the subnet on
# a link other than the cluster's bridge (another cluster, a real network).
check_subnet_free() {
  local used
  used="$(ip -o -4 addr show 2>/dev/null |
    awk -v p="$1." -v br="$CLUSTER_BRIDGE" \
      'index($4, p) == 1 && $2 != br {print $2}' | head -n 1)"
  [ -z "$used" ] ||
    die "the subnet $1.0/24 is in use on '$used' here: choose another CLUSTER_SUBNET"
  used="$(ip -4 route show to match "$1.1" 2>/dev/null |
    awk -v br="$CLUSTER_BRIDGE" '$1 != "default" {
      for (i = 1; i < NF; i++) if ($i == "dev" && $(i + 1) != br) print $(i + 1)
    }' | head -n 1)"
  [ -z "$used" ] ||
    die "the subnet $1.0/24 is routed to '$used' here: choose another CLUSTER_SUBNET"
}

# -- the network ------------------------------------------------------

ensure_bridge() {
  if ! ip link show dev "$CLUSTER_BRIDGE" >/dev/null 2>&1; then
    ip link add "$CLUSTER_BRIDGE" type bridge
  fi
  ip link set dev "$CLUSTER_BRIDGE" alias "$CLUSTER_ALIAS"
  ip addr replace "$CLUSTER_PREFIX.1/24" dev "$CLUSTER_BRIDGE"
  ip link set dev "$CLUSTER_BRIDGE" up
}

# ensure_host K: host K's namespace, its veth on the bridge, its address.
ensure_host() {
  local ns veth
  ns="$(host_ns "$1")" veth="$(host_veth "$1")"
  ns_exists "$ns" || ip netns add "$ns"
  if ! ip link show dev "$veth" >/dev/null 2>&1; then
    # A namespace left without its veth may still hold an eth0 of its own.
    ip -n "$ns" link del eth0 2>/dev/null || true
    ip link add "$veth" type veth peer name eth0 netns "$ns"
  fi
  ip link set dev "$veth" master "$CLUSTER_BRIDGE" up
  ip -n "$ns" link set dev lo up
  ip -n "$ns" addr replace "$(host_addr "$1")/24" dev eth0
  ip -n "$ns" link set dev eth0 up
  mkdir -p "$(host_dir "$1")"
}

# -- the registry: an etcd member on each registry host ---------------

member_client_url() { printf 'http://%s:%s\n' "$(host_addr "$1")" "$CLUSTER_ETCD_CLIENT_PORT"; }
member_pidfile() { printf '%s/run/h%s-etcd.pid\n' "$CLUSTER_HOME" "$1"; }
member_data() { printf '%s/etcd\n' "$(host_dir "$1")"; }

# cluster_etcd: the client URLs of every member, comma-separated (ETCD).
cluster_etcd() {
  local k urls=""
  for ((k = 1; k <= CLUSTER_REGISTRY_HOSTS; k++)); do
    urls+="${urls:+,}$(member_client_url "$k")"
  done
  printf '%s\n' "$urls"
}

initial_cluster() {
  local k peers=""
  for ((k = 1; k <= CLUSTER_REGISTRY_HOSTS; k++)); do
    peers+="${peers:+,}h$k=http://$(host_addr "$k"):$CLUSTER_ETCD_PEER_PORT"
  done
  printf '%s\n' "$peers"
}

# member_pid K: the pid of host K's etcd while it runs, in its namespace.
member_pid() {
  local pid
  pid="$(running_pid "$(member_pidfile "$1")" "$(member_data "$1")")" ||
    return 1
  ip netns pids "$(host_ns "$1")" 2>/dev/null | grep -qx "$pid" || return 1
  printf '%s\n' "$pid"
}

member_healthy() {
  curl -sS --noproxy '*' --max-time 2 "$(member_client_url "$1")/health" 2>/dev/null |
    grep -q '"health":"true"'
}

# start_member K: host K's etcd, unless it runs. A member started again
# finds its data and rejoins (the initial-* flags count only the first
# time).
start_member() {
  local k="$1" ns addr pid
  ns="$(host_ns "$k")" addr="$(host_addr "$k")"
  if pid="$(member_pid "$k")"; then
    return 0
  fi
  [ -x "$CLUSTER_ETCD_BINARY" ] ||
    die "$CLUSTER_ETCD_BINARY is not installed: run microflack_admin/install/setup-host.sh"
  mkdir -p "$CLUSTER_HOME/run" "$CLUSTER_HOME/logs" "$(host_dir "$k")"
  log "starting etcd on h$k ($addr)"
  # A clean environment: etcd reads ETCD_* variables as its flags, and
  # the platform's settings (ETCD_PORT...) are no flags of its.
  env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    ip netns exec "$ns" setsid "$CLUSTER_ETCD_BINARY" --name "h$k" \
    --data-dir "$(member_data "$k")" \
    --listen-client-urls "http://$addr:$CLUSTER_ETCD_CLIENT_PORT,http://127.0.0.1:$CLUSTER_ETCD_CLIENT_PORT" \
    --advertise-client-urls "http://$addr:$CLUSTER_ETCD_CLIENT_PORT" \
    --listen-peer-urls "http://$addr:$CLUSTER_ETCD_PEER_PORT" \
    --initial-advertise-peer-urls "http://$addr:$CLUSTER_ETCD_PEER_PORT" \
    --initial-cluster "$(initial_cluster)" \
    --initial-cluster-token "microflack-$CLUSTER" \
    --initial-cluster-state new \
    --heartbeat-interval "$CLUSTER_ETCD_HEARTBEAT" \
    --election-timeout "$CLUSTER_ETCD_ELECTION" \
    --logger zap --log-outputs stderr \
    < /dev/null >> "$CLUSTER_HOME/logs/h$k-etcd.log" 2>&1 &
  echo $! > "$(member_pidfile "$k")"
}

# wait_members_healthy SECONDS K...: until each member says it is healthy
# (it has a leader).
wait_members_healthy() {
  local seconds="$1" k
  shift
  for k in "$@"; do
    wait_until "$seconds" member_healthy "$k" ||
      die "etcd on h$k is not healthy after $seconds s (see $CLUSTER_HOME/logs/h$k-etcd.log)"
  done
}

# start_host_roles K: what host K's role runs (only the registry's today).
start_host_roles() {
  case "$(host_role "$1")" in
    registry) start_member "$1" ;;
    *) ;;
  esac
}

# -- the verbs' steps -------------------------------------------------

# cluster_up HOSTS (empty: the cluster's, or the default): make what is
# missing, start what is not running, print how to reach it.
cluster_up() {
  local hosts="$1" k
  if cluster_load; then
    [ -z "$hosts" ] || [ "$hosts" -eq "$CLUSTER_HOSTS" ] ||
      die "cluster '$CLUSTER' has $CLUSTER_HOSTS hosts, not $hosts: '$MF_SCRIPT down --name $CLUSTER' first"
  else
    if bridge_is_ours || [ -n "$(cluster_namespaces)" ]; then
      die "parts of a cluster '$CLUSTER' exist without its home $CLUSTER_HOME (made with another MF_HOME?): remove them with '$MF_SCRIPT down --name $CLUSTER' from there"
    fi
    CLUSTER_HOSTS="${hosts:-$CLUSTER_MIN_HOSTS}"
    CLUSTER_SUBNET_USED="$CLUSTER_SUBNET"
    CLUSTER_PREFIX="$(subnet_prefix "$CLUSTER_SUBNET")"
    if ! [[ "$CLUSTER_ETCD_HEARTBEAT" =~ ^[1-9][0-9]{0,4}$ ]] ||
        ! [[ "$CLUSTER_ETCD_ELECTION" =~ ^[1-9][0-9]{0,5}$ ]] ||
        [ "$CLUSTER_ETCD_ELECTION" -lt $((5 * CLUSTER_ETCD_HEARTBEAT)) ]; then
      die "CLUSTER_ETCD_HEARTBEAT and CLUSTER_ETCD_ELECTION are milliseconds, the election timeout at least 5 heartbeats (not $CLUSTER_ETCD_HEARTBEAT, $CLUSTER_ETCD_ELECTION)"
    fi
    check_subnet_free "$CLUSTER_PREFIX"
    log "creating cluster '$CLUSTER': $CLUSTER_HOSTS hosts on $CLUSTER_SUBNET"
    mkdir -p "$CLUSTER_HOME"
    printf 'HOSTS=%s\nSUBNET=%s\nETCD_HEARTBEAT=%s\nETCD_ELECTION=%s\n' \
      "$CLUSTER_HOSTS" "$CLUSTER_SUBNET" "$CLUSTER_ETCD_HEARTBEAT" \
      "$CLUSTER_ETCD_ELECTION" > "$CLUSTER_CONF"
  fi
  check_subnet_free "$CLUSTER_PREFIX"
  ensure_bridge
  for ((k = 1; k <= CLUSTER_HOSTS; k++)); do
    ensure_host "$k"
  done
  for ((k = 1; k <= CLUSTER_HOSTS; k++)); do
    start_host_roles "$k"
  done
  # The members wait for each other's first election.
  wait_members_healthy 30 $(seq 1 "$CLUSTER_REGISTRY_HOSTS")
  cluster_print
  log "cluster '$CLUSTER' is up; log in to a host with: $MF_SCRIPT exec --name $CLUSTER h1 bash"
}

# cluster_print: how to reach the cluster (stdout).
cluster_print() {
  local k
  printf 'ETCD=%s\nETCD_TIMEOUT=%s\n' "$(cluster_etcd)" "$CLUSTER_CLIENT_TIMEOUT"
  for ((k = 1; k <= CLUSTER_HOSTS; k++)); do
    printf '%-4s %-15s %-8s %s\n' "h$k" "$(host_addr "$k")" \
      "$(host_role "$k")" "$(host_ns "$k")"
  done
}

# kill_namespace_processes NS SIGNAL: send SIGNAL to every process in the
# namespace; waits up to 5 s for them to be gone.
kill_namespace_processes() {
  local ns="$1" sig="$2" pids pid
  pids="$(ip netns pids "$ns" 2>/dev/null || true)"
  [ -n "$pids" ] || return 0
  for pid in $pids; do
    kill -s "$sig" "$pid" 2>/dev/null || true
  done
  for pid in $pids; do
    wait_until 5 process_gone "$pid" || return 1
  done
}

cluster_down() {
  local ns link
  if ! cluster_exists; then
    log "no cluster '$CLUSTER' here: nothing to do"
    return 0
  fi
  log "removing cluster '$CLUSTER'"
  for ns in $(cluster_namespaces); do
    kill_namespace_processes "$ns" TERM ||
      kill_namespace_processes "$ns" KILL ||
      die "processes of $ns do not end"
  done
  for ns in $(cluster_namespaces); do
    ip netns del "$ns"
  done
  # A veth goes with its peer; what is left of a half-made cluster too.
  for link in $(ip -o link show 2>/dev/null |
      awk -F': ' '{sub(/@.*/, "", $2); print $2}' |
      grep -E "^$CLUSTER-v[0-9]+\$" || true); do
    ip link del "$link" 2>/dev/null || true
  done
  if ip link show dev "$CLUSTER_BRIDGE" >/dev/null 2>&1 &&
      { bridge_is_ours || [ -d "$CLUSTER_HOME" ]; }; then
    ip link del "$CLUSTER_BRIDGE"
  fi
  rm -rf "$CLUSTER_HOME"
  rmdir "$MF_HOME/cluster" 2>/dev/null || true
  log "cluster '$CLUSTER' removed"
}

# member_status K: one line on host K's etcd member.
member_status() {
  local k="$1" answer
  if ! member_pid "$k" >/dev/null; then
    echo "etcd: not running"
    return 1
  fi
  if ! answer="$(curl -sS --noproxy '*' --max-time 2 -X POST -d '{}' \
      "$(member_client_url "$k")/v3/maintenance/status" 2>/dev/null)"; then
    echo "etcd: running, not answering"
    return 1
  fi
  python3 - "$answer" "$(member_healthy "$k" && echo 1)" <<'PY'
import json, sys
status = json.loads(sys.argv[1])
healthy = sys.argv[2] == '1'
me = status.get('header', {}).get('member_id')
leader = status.get('leader')
role = 'leader' if me and me == leader else 'follower'
if not leader or leader == '0':
    role = 'no leader'
print('etcd %s: %s, %s, raft index %s' % (
    status.get('version', '?'), 'healthy' if healthy else 'UNHEALTHY',
    role, status.get('raftIndex', '?')))
sys.exit(0 if healthy else 1)
PY
}

# cluster_status: hosts, roles, addresses, processes, the members' health;
# fails when a host or a member is missing or unhealthy.
cluster_status() {
  local k ns line rc=0 processes
  need_cluster
  printf 'cluster %s: %s hosts on %s (bridge %s, home %s)\n' "$CLUSTER" \
    "$CLUSTER_HOSTS" "$CLUSTER_SUBNET_USED" "$CLUSTER_BRIDGE" "$CLUSTER_HOME"
  printf 'ETCD=%s\n' "$(cluster_etcd)"
  for ((k = 1; k <= CLUSTER_HOSTS; k++)); do
    ns="$(host_ns "$k")"
    if ! ns_exists "$ns"; then
      line="no namespace: run '$MF_SCRIPT up --name $CLUSTER'"
      rc=3
    else
      processes="$(ip netns pids "$ns" 2>/dev/null | wc -l)"
      line="$processes processes"
      if [ "$(host_role "$k")" = registry ]; then
        line+="; $(member_status "$k")" || rc=3
      fi
    fi
    printf '%-4s %-15s %-8s %s\n' "h$k" "$(host_addr "$k")" \
      "$(host_role "$k")" "$line"
  done
  return "$rc"
}
