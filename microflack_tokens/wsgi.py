"""The WSGI entry point gunicorn serves: ``gunicorn wsgi:app``."""
from microflack_tokens.app import create_app

app = create_app()
