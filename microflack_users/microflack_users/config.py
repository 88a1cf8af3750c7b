"""Settings of the users service (shared ones come from microflack_common)."""
from pathlib import Path

from microflack_common import config as common
from microflack_common.database import engine_options

# The service folder (this package's parent): VERSION and the dev database.
BASE_DIR = Path(__file__).parent.parent
VERSION = (BASE_DIR / 'VERSION').read_text().strip()


class Config:
    SERVICE_NAME = 'users'
    VERSION = VERSION
    DATABASE_URL = common.env_str('DATABASE_URL')
    SQLALCHEMY_DATABASE_URI = DATABASE_URL or \
        f'sqlite:///{BASE_DIR / "users.sqlite"}'
    SQLALCHEMY_ENGINE_OPTIONS = engine_options(SQLALCHEMY_DATABASE_URI)
    # A user not seen for this long (seconds) is marked offline by the
    # sweep, which runs this often (seconds).
    USERS_OFFLINE_AFTER = common.env_int('USERS_OFFLINE_AFTER', 60)
    USERS_SWEEP_INTERVAL = common.env_float('USERS_SWEEP_INTERVAL', 5)


class DevConfig(Config, common.DevConfig):
    pass


class TestConfig(Config, common.TestConfig):
    SQLALCHEMY_DATABASE_URI = common.env_str('TEST_DATABASE_URL', 'sqlite://')
    SQLALCHEMY_ENGINE_OPTIONS = engine_options(SQLALCHEMY_DATABASE_URI)


class ProdConfig(Config, common.ProdConfig):
    # Without it every instance would keep its own SQLite file.
    REQUIRED_SETTINGS = common.ProdConfig.REQUIRED_SETTINGS + ('DATABASE_URL',)


config = {'dev': DevConfig, 'test': TestConfig, 'prod': ProdConfig}
