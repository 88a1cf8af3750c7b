"""The test kit every service's tests use.

- :mod:`.client`: :class:`ApiClient`, a JSON test client with basic and
  token auth; :func:`make_token`, a token signed with the app's key.
- :mod:`.fakes`: :class:`FakeEtcd`, :class:`FakeServiceClient`,
  :class:`RecordingPusher` stand in for the registry, the other services
  and the pushes (unit tests only; integration tests use real ones).
- :mod:`.database`: a test database with the schema of the service's
  migrations, emptied between tests; many rows at once; query plans.
- :mod:`.servers`: a private etcd, free ports, an app served on loopback,
  gunicorn's master and worker objects (not running).
- :mod:`.plugin`: the pytest fixtures every suite shares (a service's
  ``tests/conftest.py`` names it in ``pytest_plugins`` and defines ``app``).
- :func:`wait_until` (from :mod:`microflack_common.polling`): the one
  polling helper.
"""
from ..loopback import free_port, free_port_pair, wait_for_port
from ..polling import seconds_until, wait_until
from .client import ApiClient, ApiResponse, basic_auth_header, make_token
from .database import (
    clean_database_app,
    database_app,
    drop_pooled_connections,
    empty_tables,
    insert_rows,
    link_parts,
    migrate_test_database,
    query_plan,
    seeded_ids,
    stored_rows,
    tables_read,
)
from .fakes import (
    FakeEtcd,
    FakeResponse,
    FakeServiceClient,
    RecordingPusher,
    reset_fakes,
)
from .servers import (
    EtcdServer,
    gunicorn_arbiter,
    gunicorn_worker,
    serving,
)

__all__ = [
    'ApiClient',
    'ApiResponse',
    'EtcdServer',
    'FakeEtcd',
    'FakeResponse',
    'FakeServiceClient',
    'RecordingPusher',
    'basic_auth_header',
    'clean_database_app',
    'database_app',
    'drop_pooled_connections',
    'empty_tables',
    'free_port',
    'free_port_pair',
    'gunicorn_arbiter',
    'gunicorn_worker',
    'insert_rows',
    'link_parts',
    'make_token',
    'migrate_test_database',
    'query_plan',
    'reset_fakes',
    'seconds_until',
    'seeded_ids',
    'serving',
    'stored_rows',
    'tables_read',
    'wait_for_port',
    'wait_until',
]
