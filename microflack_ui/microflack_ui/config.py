"""Settings of the ui service (shared ones come from microflack_common)."""
import math
from pathlib import Path

from microflack_common import config as common

# VERSION is in the service folder, this package's parent.
VERSION = (Path(__file__).parent.parent / 'VERSION').read_text().strip()


def positive(name, value):
    if not (math.isfinite(value) and value > 0):
        raise common.ConfigError(f'{name} must be a number above 0, '
                                 f'got {value}')
    return value


class Config:
    SERVICE_NAME = 'ui'
    SERVICE_URL = common.env_str('SERVICE_URL', '/')
    VERSION = VERSION
    # The client gets its updates from the Socket.IO service (SPEC section
    # 5); UI_SOCKETIO=0: it polls the REST API every second instead.
    # Rendered into the page for the client to read, as is the next one.
    UI_SOCKETIO = common.env_bool('UI_SOCKETIO', True)
    # Seconds between two "I am online" pings of a logged-in client.
    UI_PING_INTERVAL = positive('UI_PING_INTERVAL',
                                common.env_float('UI_PING_INTERVAL', 30))


class DevConfig(Config, common.DevConfig):
    pass


class TestConfig(Config, common.TestConfig):
    pass


class ProdConfig(Config, common.ProdConfig):
    pass


config = {'dev': DevConfig, 'test': TestConfig, 'prod': ProdConfig}
