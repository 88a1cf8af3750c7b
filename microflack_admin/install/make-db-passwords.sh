#!/usr/bin/env bash
# Random per-service database passwords, kept outside source control in
# $MF_HOME/secrets/db-passwords.env (mode 600). Passwords already there are
# kept; only missing ones are added.
set -euo pipefail
# shellcheck source=../lib/common.sh
source "$(dirname "$(readlink -f "$0")")/../lib/common.sh"

[ $# -eq 0 ] || usage "" "creates $MF_HOME/secrets/db-passwords.env"

file="$(secrets_dir)/db-passwords.env"
for name in $SERVICES_WITH_DB; do
  add_secret "$file" "$(tr '[:lower:]' '[:upper:]' <<< "$name")_DB_PASSWORD"
done
log "database passwords are in $file"
