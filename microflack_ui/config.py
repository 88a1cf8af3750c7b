"""Settings of the ui service (shared ones come from microflack_common)."""
from pathlib import Path

from microflack_common import config as common

VERSION = (Path(__file__).parent / 'VERSION').read_text().strip()


class Config:
    SERVICE_NAME = 'ui'
    SERVICE_URL = common.env_str('SERVICE_URL', '/')
    VERSION = VERSION
    # The client talks to the Socket.IO service instead of polling the REST
    # API (SPEC section 5); rendered into the page for app.js to read.
    UI_SOCKETIO = common.env_bool('UI_SOCKETIO', False)
    # Browser cache lifetime (seconds) of static/vendor/*; their URLs carry
    # ?v=<VERSION>, so a new release is fetched anew anyway.
    UI_VENDOR_MAX_AGE = common.env_int('UI_VENDOR_MAX_AGE', 7 * 24 * 3600)


class DevConfig(Config, common.DevConfig):
    pass


class TestConfig(Config, common.TestConfig):
    pass


class ProdConfig(Config, common.ProdConfig):
    pass


config = {'dev': DevConfig, 'test': TestConfig, 'prod': ProdConfig}
