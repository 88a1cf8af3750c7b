#!/usr/bin/env bash
# Stop everything setup-all-in-one.sh started: every service instance (and
# the registry's services), the load balancer, the log stream, and the etcd
# and Redis these scripts started. MariaDB, a system Redis or etcd, the
# data, builds and secrets stay; setup-all-in-one.sh starts it all again.
set -euo pipefail
# shellcheck source=../lib/common.sh
source "$(dirname "$(readlink -f "$0")")/../lib/common.sh"
# shellcheck source=../lib/daemons.sh
source "$MF_ADMIN/lib/daemons.sh"

[ $# -eq 0 ] || usage ""

# Also with etcd gone: the instances (and containers) must stop anyway.
"$MF_ADMIN/bin/mfkill" all >/dev/null
if [ -x "$MF_ADMIN/bin/mflb" ]; then
  "$MF_ADMIN/bin/mflb" stop
fi
stop_log_server
stop_etcd
stop_redis
log "stopped"
