#!/usr/bin/env bash
# Start one instance: bring the database schema up to date, then gunicorn
# with the platform's shared settings, which registers the instance in etcd
# once it listens and deregisters on SIGTERM.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")"
flask db upgrade
exec gunicorn -c python:microflack_common.gunicorn_config wsgi:app "$@"
