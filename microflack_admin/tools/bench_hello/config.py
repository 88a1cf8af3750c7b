"""Settings of the benchmark's hello service: the platform's common ones,
so that it registers and is served exactly like a real service."""
from microflack_common import config as common


class Config:
    SERVICE_NAME = 'hello'
    SERVICE_URL = '/hello'
    VERSION = '1.0.0'


class DevConfig(Config, common.DevConfig):
    pass


class ProdConfig(Config, common.ProdConfig):
    # No tokens to check here: only the registry matters.
    REQUIRED_SETTINGS = ('ETCD',)


config = {'dev': DevConfig, 'prod': ProdConfig}
