"""Settings of the messages service (shared ones come from microflack_common)."""
from pathlib import Path

from microflack_common import config as common
from microflack_common.config import env_bool, env_float, env_int, env_str
from microflack_common.database import engine_options

# The service folder (this package's parent): VERSION and the dev database.
HERE = Path(__file__).parent.parent
VERSION = (HERE / 'VERSION').read_text().strip()
DEV_DATABASE_URL = f"sqlite:///{HERE / 'messages.sqlite'}"


class Config:
    SERVICE_NAME = 'messages'
    VERSION = VERSION

    DATABASE_URL = env_str('DATABASE_URL')
    SQLALCHEMY_DATABASE_URI = DATABASE_URL or DEV_DATABASE_URL
    SQLALCHEMY_ENGINE_OPTIONS = engine_options(SQLALCHEMY_DATABASE_URI)

    MAX_MESSAGE_LENGTH = env_int('MAX_MESSAGE_LENGTH', 10000)   # characters
    # Link expansion: timeouts in seconds, body cap in bytes.
    LINK_CONNECT_TIMEOUT = env_float('LINK_CONNECT_TIMEOUT', 3)
    LINK_READ_TIMEOUT = env_float('LINK_READ_TIMEOUT', 5)
    LINK_MAX_BYTES = env_int('LINK_MAX_BYTES', 512 * 1024)
    LINK_MAX_PER_MESSAGE = env_int('LINK_MAX_PER_MESSAGE', 5)
    LINK_EXPANSION_WORKERS = env_int('LINK_EXPANSION_WORKERS', 4)
    # Fetch links that resolve to private/loopback/... addresses (tests only).
    ALLOW_PRIVATE_LINKS = env_bool('ALLOW_PRIVATE_LINKS', False)


class DevConfig(Config, common.DevConfig):
    pass


class TestConfig(Config, common.TestConfig):
    SQLALCHEMY_DATABASE_URI = env_str('TEST_DATABASE_URL', 'sqlite://')
    SQLALCHEMY_ENGINE_OPTIONS = engine_options(SQLALCHEMY_DATABASE_URI)
    ALLOW_PRIVATE_LINKS = False     # tests turn it on where they need it


class ProdConfig(Config, common.ProdConfig):
    REQUIRED_SETTINGS = common.ProdConfig.REQUIRED_SETTINGS + (
        'DATABASE_URL',)


config = {'dev': DevConfig, 'test': TestConfig, 'prod': ProdConfig}
