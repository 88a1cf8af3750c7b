# shellcheck shell=bash
# The roles of a platform on several hosts (issue 18), as configuration
# that mfcluster (hosts as network namespaces of one machine) and the
# real hosts' role scripts (install/setup-registry.sh, setup-lb.sh,
# setup-store.sh) both use: an etcd member's settings, a load balancer's
# keepalived.conf, the store's administrator. Source after common.sh.

# role_options ARGS...: the role scripts' one option, --print (what the
# script would write, on standard output, nothing changed): sets
# ROLE_PRINT; anything else is a usage error.
# shellcheck disable=SC2034 # the role scripts read ROLE_PRINT
role_options() {
  ROLE_PRINT=
  case "$#:${1:-}" in
    0:) ;;
    1:--print) ROLE_PRINT=1 ;;
    *) usage "[--print]" "settings come from the environment (see the script's header)" ;;
  esac
}

# etcd_member_settings NAME ADDRESS MEMBERS TOKEN DATA HEARTBEAT ELECTION:
# an etcd member's settings, one `flag=value` a line (etcd's flags without
# their dashes; as variables: ETCD_<FLAG>): named NAME, on ADDRESS, one of
# MEMBERS (name=address,... every member), clients on port 2379 (and on
# loopback), peers on 2380, its data in DATA, Raft's timing in ms.
etcd_member_settings() {
  local name="$1" address="$2" members="$3" token="$4" data="$5"
  local heartbeat="$6" election="$7" member peers=""
  for member in ${members//,/ }; do
    peers+="${peers:+,}${member%%=*}=http://${member#*=}:2380"
  done
  printf '%s\n' "name=$name" "data-dir=$data" \
    "listen-client-urls=http://$address:2379,http://127.0.0.1:2379" \
    "advertise-client-urls=http://$address:2379" \
    "listen-peer-urls=http://$address:2380" \
    "initial-advertise-peer-urls=http://$address:2380" \
    "initial-cluster=$peers" "initial-cluster-token=$token" \
    "initial-cluster-state=new" "heartbeat-interval=$heartbeat" \
    "election-timeout=$election"
}

# members_client_urls MEMBERS: the client URLs of every member (ETCD).
members_client_urls() {
  local member urls=""
  for member in ${1//,/ }; do
    urls+="${urls:+,}http://${member#*=}:2379"
  done
  printf '%s\n' "$urls"
}

# keepalived_conf NAME ADDRESS PEER VIP/PREFIX INTERFACE PRIORITY
# ROUTER_ID ADVERT LB_PORT: a load balancer's keepalived.conf: VRRP
# version 3, unicast to the other load balancer PEER, the floating
# address on INTERFACE, HAProxy's answer on LB_PORT tracked.
keepalived_conf() {
  local name="$1" address="$2" peer="$3" vip="$4" interface="$5"
  local priority="$6" router_id="$7" advert="$8" port="$9"
  cat <<CONF
# Written by MicroFlack (lib/roles.sh): $name, a load balancer.
global_defs {
  router_id $name
  script_user root
  # The check is curl, in a folder only root may write to.
  enable_script_security
  vrrp_garp_master_refresh 5
}

# HAProxy answers on this host (any HTTP answer, a 503 too): when it does
# not, this host gives the floating address up.
vrrp_script haproxy_answers {
  script "/usr/bin/curl -s -o /dev/null --noproxy 127.0.0.1 --max-time 1 http://127.0.0.1:$port/"
  interval 1
  timeout 2
  fall 2
  rise 2
}

vrrp_instance lb {
  # Both start as backups and neither takes the address back from a
  # master (nopreempt): a load balancer that comes back does not cost a
  # second move.
  state BACKUP
  nopreempt
  interface $interface
  virtual_router_id $router_id
  version 3
  priority $priority
  advert_int $advert
  unicast_src_ip $address
  unicast_peer {
    $peer
  }
  virtual_ipaddress {
    $vip dev $interface
  }
  track_script {
    haproxy_answers
  }
}
CONF
}

# db_admin_sql USER PASSWORD: the statements that make (or update) the
# services' database administrator, who may connect from any host.
db_admin_sql() {
  printf '%s\n' \
    "CREATE USER IF NOT EXISTS '$1'@'%' IDENTIFIED BY '$2';" \
    "ALTER USER '$1'@'%' IDENTIFIED BY '$2';" \
    "GRANT ALL ON *.* TO '$1'@'%' WITH GRANT OPTION;"
}

# db_admin_cnf HOST PORT USER PASSWORD: the client option file by which
# the other hosts' scripts act as that administrator (DB_ADMIN_CNF).
db_admin_cnf() {
  printf '[client]\nprotocol=tcp\nhost=%s\nport=%s\nuser=%s\npassword=%s\n' \
    "$1" "$2" "$3" "$4"
}
