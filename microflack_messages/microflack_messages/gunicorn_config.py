"""gunicorn's settings for this service (boot.sh: ``gunicorn -c
python:microflack_messages.gunicorn_config ...``): the platform's shared
settings and hooks, handed this service's config classes explicitly."""
from microflack_common.gunicorn_config import *  # noqa: F403
from microflack_common.gunicorn_config import serve

# Not imported as `config`: gunicorn would read that name as its setting.
from .config import config as service_configs

serve(service_configs)
