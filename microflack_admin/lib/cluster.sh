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
# Roles by host: registry (1-3: an etcd member each), lb (4-5: HAProxy,
# its watcher and the watchdog by mflb, and keepalived holding the
# floating address), store (6: MariaDB and Redis), worker (7 and up: an
# instance of every service, by install/setup-worker.sh). Source after
# supervisor.sh too.

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
# The workers' instances' lease: an instance cut off from the registry
# (a partition) cannot follow the revocations, and leaves rotation when
# its lease ends, within 10 s; renewed every 2 s, so that it is back in
# rotation a moment after the partition heals.
CLUSTER_REGISTRATION_TTL=10
CLUSTER_REGISTRATION_REFRESH=2

CLUSTER_MIN_HOSTS=8
CLUSTER_MAX_HOSTS=253       # .2 to .254 of the /24
CLUSTER_REGISTRY_HOSTS=3
CLUSTER_ETCD_CLIENT_PORT=2379
CLUSTER_ETCD_BINARY="/usr/bin/etcd"
# The load balancers: hosts 4 and 5, HAProxy on port 80 of every address
# of theirs, keepalived moving the floating address (CLUSTER_VIP, by
# default .100 of the subnet; kept from a cluster's creation) between them.
CLUSTER_VIP="${CLUSTER_VIP:-}"
CLUSTER_LB_HOSTS="4 5"
CLUSTER_LB_PORT=80
CLUSTER_KEEPALIVED_BINARY="/usr/sbin/keepalived"
# VRRP (version 3, which takes fractions of a second): the backup takes
# the address when it has heard no advertisement for 3 intervals and a
# bit (about 1.8 s at 0.5 s).
CLUSTER_VRRP_ADVERT=0.5
CLUSTER_VRRP_ROUTER_ID=18

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
  # The floating address (a cluster made before it had one gets the
  # default).
  CLUSTER_VIP="$(sed -n 's/^VIP=\(.*\)$/\1/p' "$CLUSTER_CONF")"
  CLUSTER_VIP="${CLUSTER_VIP:-$CLUSTER_PREFIX.100}"
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
  # A host's address names it too (WORKER_HOSTS).
  if [ -n "$CLUSTER_PREFIX" ] && [[ "$k" == "$CLUSTER_PREFIX".* ]]; then
    k="${k#"$CLUSTER_PREFIX".}"
    if [[ "$k" =~ ^[0-9]{1,3}$ ]] && [ "$k" -ge 2 ]; then k=$((k - 1)); fi
  fi
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

# each_member FUNCTION: what FUNCTION prints for each registry host K,
# comma-separated.
each_member() {
  local k list=""
  for ((k = 1; k <= CLUSTER_REGISTRY_HOSTS; k++)); do
    list+="${list:+,}$("$1" "$k")"
  done
  printf '%s\n' "$list"
}

member_name_addr() { printf 'h%s=%s\n' "$1" "$(host_addr "$1")"; }

# member_list: every member as name=address, comma-separated.
member_list() { each_member member_name_addr; }

# cluster_etcd: the client URLs of every member, comma-separated (ETCD).
cluster_etcd() { members_client_urls "$(member_list)"; }

# host_pid K PIDFILE PATTERN: the pid PIDFILE records while that process
# runs (its command line has PATTERN: running_pid) in host K's namespace.
host_pid() {
  local pid
  pid="$(running_pid "$2" "$3")" || return 1
  ip netns pids "$(host_ns "$1")" 2>/dev/null | grep -qx "$pid" || return 1
  printf '%s\n' "$pid"
}

# member_pid K: the pid of host K's etcd while it runs, in its namespace.
member_pid() { host_pid "$1" "$(member_pidfile "$1")" "$(member_data "$1")"; }

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
  local flags=() setting
  while IFS= read -r setting; do
    flags+=("--${setting%%=*}" "${setting#*=}")
  done < <(etcd_member_settings "h$k" "$addr" "$(member_list)" \
    "microflack-$CLUSTER" "$(member_data "$k")" "$CLUSTER_ETCD_HEARTBEAT" \
    "$CLUSTER_ETCD_ELECTION")
  env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    ip netns exec "$ns" setsid "$CLUSTER_ETCD_BINARY" "${flags[@]}" \
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

# -- the load balancers: mflb and keepalived on hosts 4 and 5 ---------

# check_vip ADDRESS: die unless ADDRESS is in the cluster's /24 and no
# host's (nor the bridge's, nor the network's or broadcast) address.
check_vip() {
  local last
  if ! [[ "$1" =~ ^([0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3})\.([0-9]{1,3})$ ]] ||
      [ "${BASH_REMATCH[1]}" != "$CLUSTER_PREFIX" ]; then
    die "CLUSTER_VIP must be an address of $CLUSTER_PREFIX.0/24, not '$1'"
  fi
  last="$((10#${BASH_REMATCH[2]}))"
  if [ "$last" -lt 2 ] || [ "$last" -gt 254 ] ||
      [ "$last" -le $((CLUSTER_HOSTS + 1)) ]; then
    die "CLUSTER_VIP '$1' is not free in a cluster of $CLUSTER_HOSTS hosts (they have $CLUSTER_PREFIX.2 to $CLUSTER_PREFIX.$((CLUSTER_HOSTS + 1))): choose one above"
  fi
}

is_lb_host() { [ "$(host_role "$1")" = lb ]; }
lb_peer() { if [ "$1" -eq 4 ]; then echo 5; else echo 4; fi; }
# Host 4 is preferred at the start; neither takes the address back.
lb_priority() { if [ "$1" -eq 4 ]; then echo 150; else echo 100; fi; }
keepalived_conf_file() { printf '%s/keepalived.conf\n' "$(host_dir "$1")"; }
keepalived_pidfile() { printf '%s/run/h%s-keepalived.pid\n' "$CLUSTER_HOME" "$1"; }
cluster_secrets() { printf '%s/secrets/secrets.env\n' "$CLUSTER_HOME"; }
cluster_admin_venv() { printf '%s/admin-venv\n' "$CLUSTER_HOME"; }

# ensure_lb_shared: what both load balancers share: the /stats page's
# credentials (made once, mode 600) and the admin tools' virtualenv (made
# once from the wheelhouse; each host's MF_HOME links to it).
ensure_lb_shared() {
  local file
  file="$(cluster_secrets)"
  (umask 077 && mkdir -p "$(dirname "$file")")
  chmod 700 "$(dirname "$file")"
  add_secret "$file" STATS_PASSWORD
  grep -q '^STATS_USER=' "$file" || echo 'STATS_USER=admin' >> "$file"
  (
    # shellcheck disable=SC2034 # ensure_admin_venv's virtualenv
    ADMIN_VENV="$(cluster_admin_venv)"
    ensure_admin_venv
  )
}

secret_value() { sed -n "s/^$1=//p" "$(cluster_secrets)" | head -n 1; }

# in_host K NAME=VALUE... -- COMMAND...: COMMAND on host K, in its
# namespace, in a clean environment: the user's basics, the host's own
# MF_HOME (its folder) and address, the wheelhouse, every registry member
# and the cluster's client timeout, then the settings given.
in_host() {
  local k="$1" settings=()
  shift
  while [ $# -gt 0 ] && [ "$1" != -- ]; do
    settings+=("$1")
    shift
  done
  shift
  env -i PATH="$PATH" HOME="${HOME:-/root}" LANG=C.UTF-8 \
    ${MF_PIP_VENV:+MF_PIP_VENV="$MF_PIP_VENV"} \
    ${XDG_CACHE_HOME:+XDG_CACHE_HOME="$XDG_CACHE_HOME"} \
    MF_HOME="$(host_dir "$k")" WHEELHOUSE="$WHEELHOUSE" \
    MICROFLACK_IP="$(host_addr "$k")" ETCD="$(cluster_etcd)" \
    ETCD_TIMEOUT="$CLUSTER_CLIENT_TIMEOUT" "${settings[@]}" \
    ip netns exec "$(host_ns "$k")" "$@"
}

# lb_mflb K ARGS...: mflb on host K, in its namespace, with its own
# MF_HOME (the host's folder), every registry member and the cluster's
# client timeout. No rate limits unless asked for: the cluster's clients
# all come from this machine's one address. Plain HTTP only.
lb_mflb() {
  local k="$1"
  shift
  in_host "$k" LB_BIND=0.0.0.0 LB_PORT="$CLUSTER_LB_PORT" \
    LB_LOGINS_PER_MINUTE="${LB_LOGINS_PER_MINUTE:-0}" \
    LB_REGISTRATIONS_PER_MINUTE="${LB_REGISTRATIONS_PER_MINUTE:-0}" \
    LB_POSTS_PER_MINUTE="${LB_POSTS_PER_MINUTE:-0}" \
    LB_HTTPS_PORT=0 \
    STATS_USER="$(secret_value STATS_USER)" \
    STATS_PASSWORD="$(secret_value STATS_PASSWORD)" \
    -- "$MF_ADMIN/bin/mflb" "$@"
}

# write_keepalived_conf K: host K's VRRP instance: unicast to the other
# load balancer, the floating address on eth0, HAProxy's answer tracked.
write_keepalived_conf() {
  local k="$1"
  keepalived_conf "$CLUSTER-h$k" "$(host_addr "$k")" \
    "$(host_addr "$(lb_peer "$k")")" "$CLUSTER_VIP/24" eth0 \
    "$(lb_priority "$k")" "$CLUSTER_VRRP_ROUTER_ID" "$CLUSTER_VRRP_ADVERT" \
    "$CLUSTER_LB_PORT" > "$(keepalived_conf_file "$k").new"
  mv "$(keepalived_conf_file "$k").new" "$(keepalived_conf_file "$k")"
}

# keepalived_pid K: the pid of host K's keepalived while it runs there.
keepalived_pid() {
  host_pid "$1" "$(keepalived_pidfile "$1")" "$(keepalived_conf_file "$1")"
}

start_keepalived() {
  local k="$1"
  keepalived_pid "$k" >/dev/null && return 0
  [ -x "$CLUSTER_KEEPALIVED_BINARY" ] ||
    die "$CLUSTER_KEEPALIVED_BINARY is not installed: run microflack_admin/install/setup-host.sh"
  mkdir -p "$CLUSTER_HOME/run" "$CLUSTER_HOME/logs"
  write_keepalived_conf "$k"
  # keepalived's own pid files (it refuses to start while one names a
  # live process): not the one this script keeps.
  rm -f "$CLUSTER_HOME/run/h$k-keepalived-main.pid" \
    "$CLUSTER_HOME/run/h$k-vrrp.pid"
  log "starting keepalived on h$k (priority $(lb_priority "$k"))"
  env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    ip netns exec "$(host_ns "$k")" setsid "$CLUSTER_KEEPALIVED_BINARY" \
    -n -l -D -f "$(keepalived_conf_file "$k")" \
    -p "$CLUSTER_HOME/run/h$k-keepalived-main.pid" \
    -r "$CLUSTER_HOME/run/h$k-vrrp.pid" \
    < /dev/null >> "$CLUSTER_HOME/logs/h$k-keepalived.log" 2>&1 &
  echo $! > "$(keepalived_pidfile "$k")"
  # Started when its VRRP process is (which writes its pid file).
  if ! wait_until 5 keepalived_pid "$k" ||
      ! wait_until 5 test -s "$CLUSTER_HOME/run/h$k-vrrp.pid"; then
    die "keepalived did not start on h$k (see $CLUSTER_HOME/logs/h$k-keepalived.log)"
  fi
}

# holds_vip K: whether host K has the floating address now.
holds_vip() {
  ip -n "$(host_ns "$1")" -o -4 addr show dev eth0 2>/dev/null |
    grep -qF " $CLUSTER_VIP/"
}

# vip_holder: the load balancers that have the floating address, one a
# line (none when none has it).
vip_holder() {
  local k
  for k in $CLUSTER_LB_HOSTS; do
    if holds_vip "$k"; then
      printf 'h%s\n' "$k"
    fi
  done
}

# start_lb K: HAProxy, its watcher and the watchdog (mflb start, a no-op
# when they run), then keepalived.
start_lb() {
  local k="$1" output
  ensure_lb_shared
  mkdir -p "$(host_dir "$k")"
  ln -sfn "$(cluster_admin_venv)" "$(host_dir "$k")/admin-venv"
  if ! output="$(lb_mflb "$k" start 2>&1)"; then
    printf '%s\n' "$output" >&2
    die "the load balancer did not start on h$k (log: $(host_dir "$k")/logs/lb.log)"
  fi
  start_keepalived "$k"
}

# start_lbs: both load balancers; the first is given time to take the
# floating address, so that it starts on h4 (nopreempt: whoever is master
# stays so).
start_lbs() {
  local k first=""
  for k in $CLUSTER_LB_HOSTS; do
    start_lb "$k"
    if [ -z "$first" ]; then
      first="$k"
      wait_until 10 vip_holder_is_any ||
        die "no load balancer took the floating address $CLUSTER_VIP (see $CLUSTER_HOME/logs/h$k-keepalived.log)"
    fi
  done
}

vip_holder_is_any() { [ -n "$(vip_holder)" ]; }

# lb_line K: one line on host K's load balancer (fails unless all of it
# runs).
lb_line() {
  local k="$1" rc=0 states parts=()
  states="$(lb_mflb "$k" status 2>/dev/null)" || rc=3
  parts+=("$(printf '%s' "$states" | awk '{print $1 $2}' | tr '\n' ' ' |
    sed 's/ $//; s/:running/ up/g; s/:not/ DOWN/g')")
  if keepalived_pid "$k" >/dev/null; then
    if holds_vip "$k"; then
      parts+=("keepalived: MASTER, holds $CLUSTER_VIP")
    else
      parts+=("keepalived: backup")
    fi
  else
    parts+=("keepalived: not running")
    rc=3
  fi
  printf '%s; %s\n' "${parts[0]}" "${parts[1]}"
  return "$rc"
}

# -- the store: MariaDB and Redis on host 6 ---------------------------

CLUSTER_STORE_HOST=6
CLUSTER_DB_PORT=3306
CLUSTER_REDIS_PORT=6379
CLUSTER_DB_ADMIN=mfadmin

store_addr() { host_addr "$CLUSTER_STORE_HOST"; }
store_dir() { printf '%s/%s\n' "$(host_dir "$CLUSTER_STORE_HOST")" "$1"; }
store_pidfile() { printf '%s/run/h%s-%s.pid\n' "$CLUSTER_HOME" "$CLUSTER_STORE_HOST" "$1"; }
cluster_db_admin_cnf() { printf '%s/secrets/db-admin.cnf\n' "$CLUSTER_HOME"; }
store_root_cnf() { printf '%s/root.cnf\n' "$(store_dir mariadb)"; }

# store_pid mariadb|redis: the pid of the store's daemon while it runs in
# its namespace.
store_pid() {
  host_pid "$CLUSTER_STORE_HOST" "$(store_pidfile "$1")" "$(store_dir "$1")"
}

mariadb_answers() {
  mariadb --defaults-extra-file="$(store_root_cnf)" -e 'SELECT 1' >/dev/null 2>&1
}

redis_answers() {
  redis-cli -h "$(store_addr)" -p "$CLUSTER_REDIS_PORT" ping 2>/dev/null |
    grep -qx PONG
}

# ensure_cluster_secrets: the platform's secrets, shared by every host
# (made once, mode 600): make-secrets.sh's, with the cluster's home as
# MF_HOME.
ensure_cluster_secrets() {
  MF_HOME="$CLUSTER_HOME" "$MF_ADMIN/install/make-secrets.sh" 2>/dev/null ||
    die "cannot make the cluster's secrets in $CLUSTER_HOME/secrets"
  add_secret "$(cluster_secrets)" DB_ADMIN_PASSWORD
}

# start_mariadb: a mariadbd of the store host's own (data in its folder,
# root on its socket), listening on the host's address; the services'
# administrator CLUSTER_DB_ADMIN may connect from any host, with a
# password (DB_ADMIN_CNF of the workers).
start_mariadb() {
  local dir ns password
  dir="$(store_dir mariadb)" ns="$(host_ns "$CLUSTER_STORE_HOST")"
  if ! store_pid mariadb >/dev/null; then
    if [ ! -x /usr/sbin/mariadbd ] ||
        ! command -v mariadb-install-db >/dev/null; then
      die "MariaDB is not installed: run microflack_admin/install/setup-host.sh"
    fi
    mkdir -p "$dir" "$CLUSTER_HOME/run" "$CLUSTER_HOME/logs"
    printf '[client]\nprotocol=socket\nsocket=%s/mysqld.sock\nuser=root\n' \
      "$dir" > "$(store_root_cnf)"
    if [ ! -d "$dir/data/mysql" ]; then
      log "creating the store's database in $dir/data"
      mariadb-install-db --no-defaults --datadir="$dir/data" --user=root \
        --auth-root-authentication-method=socket --skip-test-db \
        >> "$CLUSTER_HOME/logs/h$CLUSTER_STORE_HOST-mariadb.log" 2>&1 ||
        die "mariadb-install-db failed (see $CLUSTER_HOME/logs/h$CLUSTER_STORE_HOST-mariadb.log)"
    fi
    log "starting MariaDB on h$CLUSTER_STORE_HOST ($(store_addr):$CLUSTER_DB_PORT)"
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
      ip netns exec "$ns" setsid /usr/sbin/mariadbd --no-defaults --user=root \
      --datadir="$dir/data" --socket="$dir/mysqld.sock" \
      --bind-address="$(store_addr)" --port="$CLUSTER_DB_PORT" \
      --pid-file="$dir/mariadbd.pid" --skip-log-bin \
      --character-set-server=utf8mb4 --collation-server=utf8mb4_unicode_ci \
      --log-error="$CLUSTER_HOME/logs/h$CLUSTER_STORE_HOST-mariadb.log" \
      < /dev/null >> "$CLUSTER_HOME/logs/h$CLUSTER_STORE_HOST-mariadb.log" 2>&1 &
    echo $! > "$(store_pidfile mariadb)"
  fi
  wait_until 30 mariadb_answers ||
    die "MariaDB did not start on h$CLUSTER_STORE_HOST (see $CLUSTER_HOME/logs/h$CLUSTER_STORE_HOST-mariadb.log)"
  password="$(secret_value DB_ADMIN_PASSWORD)"
  db_admin_sql "$CLUSTER_DB_ADMIN" "$password" |
    mariadb --defaults-extra-file="$(store_root_cnf)"
  (
    umask 077
    db_admin_cnf "$(store_addr)" "$CLUSTER_DB_PORT" "$CLUSTER_DB_ADMIN" \
      "$password" > "$(cluster_db_admin_cnf)"
  )
}

# start_redis: a redis-server of the store host's own on its address
# (no persistence: it carries pushes, nothing stored).
start_redis() {
  local dir
  dir="$(store_dir redis)"
  if ! store_pid redis >/dev/null; then
    need_cmd redis-server redis-cli
    mkdir -p "$dir" "$CLUSTER_HOME/run" "$CLUSTER_HOME/logs"
    log "starting Redis on h$CLUSTER_STORE_HOST ($(store_addr):$CLUSTER_REDIS_PORT)"
    # Not in protected mode: the workers reach it over the network (the
    # cluster's subnet only; issue 19 gives it a password).
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
      ip netns exec "$(host_ns "$CLUSTER_STORE_HOST")" setsid redis-server \
      --bind "$(store_addr)" --port "$CLUSTER_REDIS_PORT" --dir "$dir" \
      --save '' --appendonly no --protected-mode no --daemonize no \
      < /dev/null >> "$CLUSTER_HOME/logs/h$CLUSTER_STORE_HOST-redis.log" 2>&1 &
    echo $! > "$(store_pidfile redis)"
  fi
  wait_until 10 redis_answers ||
    die "Redis did not start on h$CLUSTER_STORE_HOST (see $CLUSTER_HOME/logs/h$CLUSTER_STORE_HOST-redis.log)"
}

start_store() {
  ensure_cluster_secrets
  start_mariadb
  start_redis
}

# store_line: one line on the store's daemons (fails unless both answer).
store_line() {
  local rc=0 db=up redis=up
  mariadb_answers || { db=DOWN; rc=3; }
  redis_answers || { redis=DOWN; rc=3; }
  printf 'mariadb %s:%s %s; redis %s:%s %s\n' "$(store_addr)" \
    "$CLUSTER_DB_PORT" "$db" "$(store_addr)" "$CLUSTER_REDIS_PORT" "$redis"
  return "$rc"
}

# -- the workers: service instances on hosts 7 and up -----------------

# worker_env K COMMAND...: COMMAND on worker K, in its namespace, with its
# own MF_HOME (the host's folder) and the settings of a worker
# (install/setup-worker.sh).
worker_env() {
  local k="$1"
  shift
  in_host "$k" HOST_ID="$CLUSTER-h$k" \
    REGISTRATION_TTL="$CLUSTER_REGISTRATION_TTL" \
    REGISTRATION_REFRESH="$CLUSTER_REGISTRATION_REFRESH" \
    LB_URL="http://$CLUSTER_VIP" \
    REDIS="$(store_addr):$CLUSTER_REDIS_PORT" \
    DB_HOST="$(store_addr)" DB_PORT="$CLUSTER_DB_PORT" \
    DB_ADMIN_CNF="$(cluster_db_admin_cnf)" -- "$@"
}

# ensure_worker_shared: what the workers share on this machine: the
# secrets, the admin tools' virtualenv and the builds (made once in the
# cluster's home; each worker's MF_HOME links to them; on real hosts each
# worker builds its own).
ensure_worker_shared() {
  ensure_lb_shared
  ensure_cluster_secrets
  if ! MF_HOME="$CLUSTER_HOME" WHEELHOUSE="$WHEELHOUSE" \
      "$MF_ADMIN/bin/mfbuild" all > "$CLUSTER_HOME/logs/mfbuild.log" 2>&1; then
    tail -n 20 "$CLUSTER_HOME/logs/mfbuild.log" >&2
    die "the cluster's builds failed (see $CLUSTER_HOME/logs/mfbuild.log)"
  fi
}

# start_worker K: setup-worker.sh on host K (one instance of every service
# that has none there; those gone since forgotten).
start_worker() {
  local k="$1" dir
  dir="$(host_dir "$k")"
  mkdir -p "$dir" "$CLUSTER_HOME/releases"
  ln -sfn "$(cluster_admin_venv)" "$dir/admin-venv"
  ln -sfn "$CLUSTER_HOME/secrets" "$dir/secrets"
  ln -sfn "$CLUSTER_HOME/releases" "$dir/releases"
  log "starting the services on h$k ($(host_addr "$k"))"
  if ! worker_env "$k" "$MF_ADMIN/install/setup-worker.sh" \
      >> "$CLUSTER_HOME/logs/h$k-setup-worker.log" 2>&1; then
    tail -n 20 "$CLUSTER_HOME/logs/h$k-setup-worker.log" >&2
    die "the services did not start on h$k (see $CLUSTER_HOME/logs/h$k-setup-worker.log)"
  fi
}

# worker_line K: one line on worker K's instances (fails unless every
# one its supervisor has runs, and it has one at least).
worker_line() {
  local k="$1" states running total
  states="$("$(cluster_admin_venv)/bin/supervisorctl" \
    -c "$(host_dir "$k")/supervisor/supervisord.conf" status 2>/dev/null)" || true
  total="$(grep -c . <<< "$states" || true)"
  running="$(awk '$2 == "RUNNING" {sub(/_v.*/, "", $1); print $1}' <<< "$states" |
    sort | paste -sd ' ' -)"
  printf 'instances running: %s of %s (%s)\n' "$(wc -w <<< "$running")" \
    "$total" "${running:-none}"
  [ -n "$running" ] && [ "$(wc -w <<< "$running")" -eq "$total" ]
}

# start_host_roles K: what host K's role runs.
start_host_roles() {
  case "$(host_role "$1")" in
    registry) start_member "$1" ;;
    lb) start_lb "$1" ;;
    store) start_store ;;
    worker)
      ensure_worker_shared
      start_worker "$1"
      ;;
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
    CLUSTER_VIP="${CLUSTER_VIP:-$CLUSTER_PREFIX.100}"
    check_vip "$CLUSTER_VIP"
    check_subnet_free "$CLUSTER_PREFIX"
    log "creating cluster '$CLUSTER': $CLUSTER_HOSTS hosts on $CLUSTER_SUBNET"
    mkdir -p "$CLUSTER_HOME"
    printf 'HOSTS=%s\nSUBNET=%s\nETCD_HEARTBEAT=%s\nETCD_ELECTION=%s\nVIP=%s\n' \
      "$CLUSTER_HOSTS" "$CLUSTER_SUBNET" "$CLUSTER_ETCD_HEARTBEAT" \
      "$CLUSTER_ETCD_ELECTION" "$CLUSTER_VIP" > "$CLUSTER_CONF"
  fi
  check_subnet_free "$CLUSTER_PREFIX"
  ensure_bridge
  for ((k = 1; k <= CLUSTER_HOSTS; k++)); do
    ensure_host "$k"
  done
  for ((k = 1; k <= CLUSTER_REGISTRY_HOSTS; k++)); do
    start_member "$k"
  done
  # The members wait for each other's first election; the load balancers
  # need the registry.
  wait_members_healthy 30 $(seq 1 "$CLUSTER_REGISTRY_HOSTS")
  start_store
  start_lbs
  # The workers' instances are routed by the load balancers.
  ensure_worker_shared
  for ((k = CLUSTER_STORE_HOST + 1; k <= CLUSTER_HOSTS; k++)); do
    start_worker "$k"
  done
  cluster_print
  log "cluster '$CLUSTER' is up; log in to a host with: $MF_SCRIPT exec --name $CLUSTER h1 bash"
}

# cluster_print: how to reach the cluster (stdout).
cluster_print() {
  local k
  printf 'ETCD=%s\nETCD_TIMEOUT=%s\n' "$(cluster_etcd)" "$CLUSTER_CLIENT_TIMEOUT"
  # The chat's URL: the floating address.
  printf 'URL=http://%s/\n' "$CLUSTER_VIP"
  # The workers' log streams (mflogs with WORKER_HOSTS).
  printf 'WORKER_HOSTS=%s\n' "$(for ((k = CLUSTER_STORE_HOST + 1; k <= CLUSTER_HOSTS; k++)); do
    host_addr "$k"; done | paste -sd , -)"
  for ((k = 1; k <= CLUSTER_HOSTS; k++)); do
    printf '%-4s %-15s %-8s %s\n' "h$k" "$(host_addr "$k")" \
      "$(host_role "$k")" "$(host_ns "$k")"
  done
}

# kill_namespace_processes NS SIGNAL: send SIGNAL to every process in the
# namespace; waits up to 5 s for them to be gone.
# A supervisor may start a program again meanwhile: the namespace is
# looked at again until it has none left.
kill_namespace_processes() {
  local ns="$1" sig="$2" pids pid round
  for round in 1 2 3 4 5; do
    pids="$(ip netns pids "$ns" 2>/dev/null || true)"
    [ -n "$pids" ] || return 0
    [ "$round" -lt 5 ] || return 1
    if [ "$sig" = KILL ]; then
      # All stopped first, so that none hears of another's death (a
      # parent's death signal would have keepalived's VRRP process say
      # goodbye to its peer): the host dies at once.
      for pid in $pids; do
        kill -s STOP "$pid" 2>/dev/null || true
      done
    fi
    for pid in $pids; do
      kill -s "$sig" "$pid" 2>/dev/null || true
    done
    for pid in $pids; do
      wait_until 5 process_gone "$pid" || return 1
    done
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
  local k ns line rc=0 processes holders
  need_cluster
  printf 'cluster %s: %s hosts on %s (bridge %s, home %s)\n' "$CLUSTER" \
    "$CLUSTER_HOSTS" "$CLUSTER_SUBNET_USED" "$CLUSTER_BRIDGE" "$CLUSTER_HOME"
  printf 'ETCD=%s\n' "$(cluster_etcd)"
  holders="$(vip_holder | paste -sd ' ' -)"
  printf 'URL=http://%s/ (the floating address, on %s)\n' "$CLUSTER_VIP" \
    "${holders:-NO load balancer}"
  # One holder, not none nor two.
  [[ "$holders" =~ ^h[0-9]+$ ]] || rc=3
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
      elif is_lb_host "$k"; then
        line+="; $(lb_line "$k")" || rc=3
      elif [ "$k" -eq "$CLUSTER_STORE_HOST" ]; then
        line+="; $(store_line)" || rc=3
      else
        line+="; $(worker_line "$k")" || rc=3
      fi
    fi
    printf '%-4s %-15s %-8s %s\n' "h$k" "$(host_addr "$k")" \
      "$(host_role "$k")" "$line"
  done
  return "$rc"
}
