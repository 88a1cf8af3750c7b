"""Where an instance's gunicorn listens: SERVICE_BIND when given (e.g. all
interfaces), else the address it registers (SERVICE_ADDRESS)."""
import os
import subprocess
import sys

import pytest


def bind_with(**settings):
    env = {name: value for name, value in os.environ.items()
           if name not in ('SERVICE_BIND', 'SERVICE_ADDRESS')}
    env.update(settings)
    return subprocess.run(
        [sys.executable, '-c',
         'import microflack_common.gunicorn_config as c; print(c.bind)'],
        env=env, capture_output=True, text=True, check=True,
        timeout=60).stdout.strip()


@pytest.mark.parametrize('settings, bind', [
    ({'SERVICE_ADDRESS': '192.0.2.5:5123'}, '192.0.2.5:5123'),
    ({'SERVICE_ADDRESS': '192.0.2.5:5123', 'SERVICE_BIND': '0.0.0.0:5123'},
     '0.0.0.0:5123'),
    ({'SERVICE_ADDRESS': '127.0.0.1:5123', 'SERVICE_BIND': ''},
     '127.0.0.1:5123'),
])
def test_gunicorn_listens_on_service_bind_else_service_address(settings,
                                                              bind):
    assert bind_with(**settings) == bind
