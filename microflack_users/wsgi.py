"""The WSGI entry point gunicorn serves: ``gunicorn wsgi:app``.

Each worker process sweeps offline users on its own thread (several
sweepers are harmless: a user already offline is left alone).
"""
from microflack_users.app import create_app
from microflack_users.tasks import OfflineSweep

app = create_app(migrations=False)
sweep = OfflineSweep(app).start()
app.extensions['microflack'].on_shutdown(sweep.stop)
