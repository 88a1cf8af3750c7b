#!/usr/bin/env bash
# Start one instance: gunicorn with the platform's shared settings, which
# registers the instance in etcd once it listens and deregisters on SIGTERM.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")"
exec gunicorn -c python:microflack_ui.gunicorn_config wsgi:app "$@"
