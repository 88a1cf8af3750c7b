"""The WSGI entry point gunicorn serves, one eventlet worker per instance::

    gunicorn -c python:microflack_socketio.gunicorn_config -k eventlet -w 1 \
        wsgi:app

eventlet patches the standard library first of all, before anything
imports socket, threading or requests: the relays to the other services
(requests) and the Redis listener then yield to the eventlet hub instead of
blocking every client of the worker.
"""
import eventlet

eventlet.monkey_patch()

from microflack_socketio.app import create_app  # noqa: E402
from microflack_socketio.events import stop_cleanly_under_gunicorn  # noqa: E402

app = create_app()
stop_cleanly_under_gunicorn(app)
