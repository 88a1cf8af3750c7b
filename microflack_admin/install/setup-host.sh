#!/usr/bin/env bash
# Install the system packages MicroFlack needs on a Debian/Ubuntu host.
# Only what is missing is installed; a second run changes nothing.
#   setup-host.sh [--with-browser] [--with-docker] [--with-bench]
#     --with-browser  also Chromium, for the browser end-to-end tests
#     --with-docker   also a Docker engine (started if none runs) and
#                     debootstrap, for the Docker runtime
#     --with-bench    also wrk, the load generator of mfbench
set -euo pipefail
# shellcheck source=../lib/common.sh
source "$(dirname "$(readlink -f "$0")")/../lib/common.sh"

with_browser=
with_docker=
with_bench=
options="[--with-browser] [--with-docker] [--with-bench]"
for arg in "$@"; do
  case "$arg" in
    --with-browser) with_browser=1 ;;
    --with-docker) with_docker=1 ;;
    --with-bench) with_bench=1 ;;
    -h|--help) usage "$options" ;;
    *) usage "$options" "unknown option: $arg" ;;
  esac
done

command -v apt-get >/dev/null 2>&1 ||
  die "apt-get not found: this script supports Debian and Ubuntu hosts"
[ "$(id -u)" -eq 0 ] || need_cmd sudo
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# "<file or command that proves it is there> <package>" pairs.
wanted=(
  "python3 python3"
  "/usr/bin/etcd etcd-server"
  "/usr/sbin/keepalived keepalived"
  "haproxy haproxy"
  "/usr/sbin/mariadbd mariadb-server"
  "mariadb mariadb-client"
  "redis-server redis-server"
  "redis-cli redis-tools"
  "shellcheck shellcheck"
  "node nodejs"
  "npm npm"
  "curl curl"
  "setsid util-linux"
  "ss iproute2"
  "openssl openssl"
)
if [ -n "$with_browser" ]; then
  # certutil: the browser tests trust the platform's CA in an NSS database.
  wanted+=("/usr/bin/chromium chromium" "fc-list fonts-dejavu-core"
    "certutil libnss3-tools")
fi

if [ -n "$with_docker" ]; then
  wanted+=("/usr/sbin/dockerd docker.io" "/usr/sbin/debootstrap debootstrap")
fi

if [ -n "$with_bench" ]; then
  wanted+=("wrk wrk")
fi

missing=()
for pair in "${wanted[@]}"; do
  probe="${pair% *}"
  package="${pair#* }"
  if [ "${probe:0:1}" = / ]; then
    [ -e "$probe" ] && continue
  else
    command -v "$probe" >/dev/null 2>&1 && continue
  fi
  missing+=("$package")
done
# A Python that cannot make virtualenvs needs its venv module: the
# distribution's, which the platform prefers (see python_for_venvs), and
# the one first on PATH.
for python in /usr/bin/python3 python3; do
  if command -v "$python" >/dev/null 2>&1 &&
      ! "$python" -c 'import venv, ensurepip' 2>/dev/null; then
    missing+=("python3-venv")
    break
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  log "all system packages are present"
else
  log "installing: ${missing[*]}"
  as_root apt-get update -qq
  # Daemons are started by MicroFlack's own scripts, not by the packages.
  as_root env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 \
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  log "installed: ${missing[*]}"
fi
if [ -n "$with_docker" ]; then
  as_root "$MF_ADMIN/install/start-docker.sh"
fi
