"""The WSGI entry point gunicorn serves: ``gunicorn wsgi:app``."""
from microflack_messages.app import create_app

app = create_app(migrations=False)
