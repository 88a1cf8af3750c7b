#!/usr/bin/env bash
# Start one instance: gunicorn with the platform's shared settings, which
# registers the instance in etcd once it listens and deregisters on SIGTERM.
# One eventlet worker (gunicorn 25, the last with it): it holds every
# client's long-lived connection, and a client's polling and WebSocket
# requests must all reach the same process.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")"
exec gunicorn -c python:microflack_socketio.gunicorn_config -k eventlet -w 1 \
  wsgi:app "$@"
