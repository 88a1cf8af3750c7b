#!/usr/bin/env bash
# The platform's secrets, generated once and kept in $MF_HOME/secrets
# (folder 700, files 600): the Flask and JWT keys shared by the services,
# the credentials of the load balancer's /stats page and of the log stream,
# and the database passwords (make-db-passwords.sh). Never regenerated.
set -euo pipefail
# shellcheck source=../lib/common.sh
source "$(dirname "$(readlink -f "$0")")/../lib/common.sh"

[ $# -eq 0 ] || usage "" "creates $MF_HOME/secrets/secrets.env"

file="$(secrets_dir)/secrets.env"
for name in SECRET_KEY JWT_SECRET_KEY STATS_PASSWORD LOGS_PASSWORD; do
  add_secret "$file" "$name"
done
grep -q '^STATS_USER=' "$file" || echo 'STATS_USER=admin' >> "$file"
grep -q '^LOGS_USER=' "$file" || echo 'LOGS_USER=admin' >> "$file"
log "secrets are in $file"
"$MF_ADMIN/install/make-db-passwords.sh"
