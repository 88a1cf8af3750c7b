#!/usr/bin/env bash
# Build this service's Docker image (microflack_<service>:<VERSION> and
# :latest) offline from the host's wheelhouse; mfbuild does the work.
#   build.sh
set -euo pipefail
here="$(dirname "$(readlink -f "$0")")"
MICROFLACK_RUNTIME=docker exec "$here/../microflack_admin/bin/mfbuild" \
  "${here##*/microflack_}" "$@"
