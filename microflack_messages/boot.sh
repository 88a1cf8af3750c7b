#!/usr/bin/env bash
# Start one instance: bring the database schema up to date, then gunicorn
# with the platform's shared settings, which registers the instance in etcd
# once it listens and deregisters on SIGTERM.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")"
# Under a database-wide lock: instances starting together migrate once, and
# none serves before the schema is current (waits MIGRATION_LOCK_TIMEOUT s
# at most for another instance's migration, then fails). The app is named
# here, whatever FLASK_APP says: the factory with the migration commands.
flask --app microflack_messages.app db-upgrade-locked
exec gunicorn -c python:microflack_messages.gunicorn_config wsgi:app "$@"
