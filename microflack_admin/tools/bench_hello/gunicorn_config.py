"""gunicorn's settings for the benchmark's hello service: the platform's
shared settings and hooks, handed its config classes as a service's own
gunicorn_config does."""
# Not imported as `config`: gunicorn would read that name as its setting.
from config import config as service_configs

from microflack_common.gunicorn_config import *  # noqa: F403
from microflack_common.gunicorn_config import serve

serve(service_configs)
