"""Settings of the tokens service (shared ones come from microflack_common)."""
from pathlib import Path

from microflack_common import config as common

# VERSION is in the service folder, this package's parent.
VERSION = (Path(__file__).parent.parent / 'VERSION').read_text().strip()


class Config:
    SERVICE_NAME = 'tokens'
    VERSION = VERSION


class DevConfig(Config, common.DevConfig):
    pass


class TestConfig(Config, common.TestConfig):
    pass


class ProdConfig(Config, common.ProdConfig):
    REQUIRED_SETTINGS = common.ProdConfig.REQUIRED_SETTINGS + ('LB',)


config = {'dev': DevConfig, 'test': TestConfig, 'prod': ProdConfig}
