"""Settings of the socketio service (shared ones come from microflack_common)."""
from pathlib import Path

from microflack_common import config as common

VERSION = (Path(__file__).parent / 'VERSION').read_text().strip()


class Config:
    SERVICE_NAME = 'socketio'
    VERSION = VERSION
    SERVICE_URL = common.env_str('SERVICE_URL', '/socket.io')
    # Sticky sessions: a client's polling and WebSocket requests must reach
    # the same instance.
    LB_ALGORITHM = common.env_str('LB_ALGORITHM', 'source')


class DevConfig(Config, common.DevConfig):
    pass


class TestConfig(Config, common.TestConfig):
    pass


class ProdConfig(Config, common.ProdConfig):
    REQUIRED_SETTINGS = common.ProdConfig.REQUIRED_SETTINGS + ('LB', 'REDIS')


config = {'dev': DevConfig, 'test': TestConfig, 'prod': ProdConfig}
