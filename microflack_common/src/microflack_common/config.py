"""Settings every service reads from its environment (SPEC section 2).

A service's own ``config.py`` mixes its settings into the three classes
below::

    class Config:
        SERVICE_NAME = 'users'

    class DevConfig(Config, common_config.DevConfig): ...
    class TestConfig(Config, common_config.TestConfig): ...
    class ProdConfig(Config, common_config.ProdConfig): ...

and picks one with :func:`select` from ``FLASK_CONFIG``.
"""
import os


class ConfigError(RuntimeError):
    """A setting is missing or malformed; the message names the variable."""


def env_str(name, default=None):
    value = os.environ.get(name)
    return value if value not in (None, '') else default


def env_int(name, default):
    value = os.environ.get(name)
    if value in (None, ''):
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f'{name} must be an integer, got {value!r}') from None


def env_float(name, default):
    value = os.environ.get(name)
    if value in (None, ''):
        return default
    try:
        return float(value)
    except ValueError:
        raise ConfigError(f'{name} must be a number, got {value!r}') from None


def env_bool(name, default=False):
    value = os.environ.get(name)
    if value in (None, ''):
        return default
    return value.strip().lower() in ('1', 'true', 'yes', 'on')


def load_secrets_file(path=None):
    """Add the ``NAME=value`` lines of the file ``SECRETS_FILE`` names to
    the environment (a variable already set wins). A container gets its
    secrets this way, from a read-only mount, so that ``docker inspect``
    does not show them as it shows its environment."""
    path = path or os.environ.get('SECRETS_FILE')
    if not path:
        return
    try:
        with open(path, encoding='utf-8') as file:
            lines = file.read().splitlines()
    except OSError as exc:
        raise ConfigError(f'SECRETS_FILE {path}: {exc.strerror}') from None
    for line in lines:
        name, sep, value = line.partition('=')
        if line.startswith('#') or not line.strip():
            continue
        if not sep or not name.isidentifier():
            raise ConfigError(f'SECRETS_FILE {path}: not a NAME=value line')
        os.environ.setdefault(name, value)


# Before the classes below read the environment.
load_secrets_file()


class Config:
    """Settings common to all services, read from the environment."""
    SERVICE_NAME = None             # set by each service
    SERVICE_URL = env_str('SERVICE_URL')   # default: /api/<SERVICE_NAME>
    SERVICE_ADDRESS = env_str('SERVICE_ADDRESS')
    SERVICE_VERSION = env_str('SERVICE_VERSION')
    INSTANCE_NAME = env_str('INSTANCE_NAME')
    LB_ALGORITHM = env_str('LB_ALGORITHM', 'roundrobin')
    # Requests the load balancer sends one instance at once (0: no limit),
    # registered as the backend's maxconn: a burst beyond waits in
    # HAProxy's queue instead of piling up in gunicorn, where health checks
    # would wait behind it. Four per thread (32): at exactly one per thread
    # HAProxy hands a queued request over only once a response is out and
    # the threads idle in between (measured: a tenth less throughput at 32
    # connections); at 32 no difference from no limit. (Slow clients hold
    # no thread anyway: the load balancer buffers request bodies.)
    LB_SERVER_MAXCONN = env_int('LB_SERVER_MAXCONN', 4 * env_int(
        'WEB_CONCURRENCY', 2) * env_int('GUNICORN_THREADS', 4))
    # Seconds the load balancer waits for an instance's answer; a GET not
    # answered in time (a hung instance) is sent to another instance.
    LB_TIMEOUT_SERVER = env_int('LB_TIMEOUT_SERVER', 10)

    SECRET_KEY = env_str('SECRET_KEY')
    JWT_SECRET_KEY = env_str('JWT_SECRET_KEY')
    TOKEN_EXPIRATION = env_int('TOKEN_EXPIRATION', 3600)   # seconds

    ETCD = env_str('ETCD')
    LB = env_str('LB')
    REDIS = env_str('REDIS')
    # Pub/sub channel of the pushes: platforms sharing a Redis each use
    # their own.
    REDIS_CHANNEL = env_str('REDIS_CHANNEL', 'flask-socketio')

    # Registry upstream key: written with this TTL, refreshed this often.
    REGISTRATION_TTL = env_int('REGISTRATION_TTL', 50)
    REGISTRATION_REFRESH = env_float('REGISTRATION_REFRESH', 15)
    # How long a token's revocation status may be served from memory.
    REVOCATION_CACHE_SECONDS = env_float('REVOCATION_CACHE_SECONDS', 2)
    # Inter-service HTTP: timeouts (seconds) and retries.
    HTTP_CONNECT_TIMEOUT = env_float('HTTP_CONNECT_TIMEOUT', 3.05)
    HTTP_READ_TIMEOUT = env_float('HTTP_READ_TIMEOUT', 10)
    HTTP_RETRIES = env_int('HTTP_RETRIES', 3)
    ETCD_TIMEOUT = env_float('ETCD_TIMEOUT', 2)
    # `flask db-upgrade-locked`: how long an instance waits while another
    # one migrates the same database (seconds).
    MIGRATION_LOCK_TIMEOUT = env_float('MIGRATION_LOCK_TIMEOUT', 60)
    # A pooled database connection idle for longer than this (seconds) is
    # pinged before use (see microflack_common.database).
    DB_PING_AFTER_IDLE = env_float('DB_PING_AFTER_IDLE', 1.0)

    # Flask's signed-cookie sessions; the REST services identify callers by
    # their tokens and have none (see service.NoCookieSessions).
    COOKIE_SESSIONS = False
    # Unsorted keys: as written, and cheaper to serialise.
    JSON_SORT_KEYS = False
    MAX_CONTENT_LENGTH = env_int('MAX_CONTENT_LENGTH', 256 * 1024)
    # Items in one page of a paged list (microflack_common.paging): a
    # larger `limit` is capped to this.
    MAX_PAGE_SIZE = env_int('MAX_PAGE_SIZE', 500)
    REQUIRED_SETTINGS = ()


class DevConfig(Config):
    DEBUG = True
    # Development works out of the box against a local etcd; never in prod.
    SECRET_KEY = Config.SECRET_KEY or 'dev-secret-key'
    JWT_SECRET_KEY = Config.JWT_SECRET_KEY or 'dev-jwt-secret-key'
    ETCD = Config.ETCD or 'http://127.0.0.1:2379'
    LB = Config.LB or 'http://127.0.0.1'


class TestConfig(Config):
    TESTING = True
    SECRET_KEY = 'test-secret-key'
    JWT_SECRET_KEY = 'test-jwt-secret-key-of-32-bytes!'
    ETCD = None             # tests inject a fake registry
    LB = 'http://lb.test'   # tests replace inter-service calls
    REDIS = None
    SERVICE_VERSION = 'test'
    INSTANCE_NAME = None


class ProdConfig(Config):
    REQUIRED_SETTINGS = ('SECRET_KEY', 'JWT_SECRET_KEY', 'ETCD')


def select(config_classes, name=None):
    """Return the class named by ``FLASK_CONFIG`` (``dev`` by default)."""
    name = name or env_str('FLASK_CONFIG', 'dev')
    try:
        return config_classes[name]
    except KeyError:
        choices = ', '.join(sorted(config_classes))
        raise ConfigError(
            f'FLASK_CONFIG must be one of {choices}, got {name!r}') from None


def check_required(config):
    """Raise ConfigError naming every required setting that is missing."""
    missing = [name for name in config.get('REQUIRED_SETTINGS', ())
               if not config.get(name)]
    if missing:
        raise ConfigError('missing required environment variable(s): '
                          + ', '.join(missing))
