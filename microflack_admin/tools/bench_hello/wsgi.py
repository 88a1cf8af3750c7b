"""The ceiling of mfbench: the smallest Flask app, served by gunicorn with
the platform's settings (``gunicorn_config``, the shared ones) behind the
same load balancer as the services."""
import os

from flask import Flask

app = Flask(__name__)
INSTANCE = os.environ.get('INSTANCE_NAME', 'hello')


@app.get('/hello')
def hello():
    return {'hello': 'world', 'instance': INSTANCE}


@app.get('/health')
def health():
    return {'status': 'ok'}
