#!/usr/bin/env bash
# Start a Docker engine when none answers: dockerd with bridge networking
# and iptables off (MicroFlack's containers use the host's network), its
# log in /var/log/microflack-dockerd.log. A running engine is left alone.
#   start-docker.sh
set -euo pipefail
# shellcheck source=../lib/common.sh
source "$(dirname "$(readlink -f "$0")")/../lib/common.sh"
# shellcheck source=../lib/daemons.sh
source "$MF_ADMIN/lib/daemons.sh"

[ $# -eq 0 ] || usage ""
need_cmd docker
if docker info >/dev/null 2>&1; then
  log "the Docker engine is running"
  exit 0
fi
need_cmd dockerd
[ "$(id -u)" -eq 0 ] || die "no Docker engine answers; start one as root (sudo $0)"
log "starting the Docker engine"
setsid dockerd --bridge=none --iptables=false --ip-masq=false \
  < /dev/null >> /var/log/microflack-dockerd.log 2>&1 &
wait_until 60 docker info ||
  die "the Docker engine did not start (see /var/log/microflack-dockerd.log)"
log "the Docker engine is running"
