"""``flask db-upgrade-locked`` on a small service with two migrations:
real processes racing on one MariaDB database or SQLite file migrate it
once, a held lock makes an instance wait and then fail cleanly, and the
log line says what was done.

MariaDB is always there when the test command runs this suite: root,
through the unix socket, makes the test database and its user.
"""
import contextlib
import fcntl
import hashlib
import logging
import os
import secrets
import subprocess
import sys
import textwrap
import time
import uuid
from importlib import util as importlib_util
from pathlib import Path

import pytest
import sqlalchemy as sa

from microflack_common.db_lock import (
    LockUnsupported,
    database_lock,
    mysql_lock_name,
    sqlite_lock_path,
)
from microflack_common.testing import wait_until

# Named per checkout: two checkouts may run their tests on one MariaDB.
CHECKOUT_TAG = hashlib.sha256(
    str(Path(__file__).resolve().parents[2]).encode()).hexdigest()[:6]
MARIADB_DATABASE = f'mf_test{CHECKOUT_TAG}_common_migrate'
MARIADB_USER = f'mf_test{CHECKOUT_TAG}_common'
FIRST, SECOND = 'a1a1a1a1a1a1', 'b2b2b2b2b2b2'

SERVICE = {
    'sample.py': '''
        import os

        from flask import Flask
        from flask_migrate import Migrate
        from flask_sqlalchemy import SQLAlchemy

        from microflack_common import config as common
        from microflack_common.service import init_service

        MIGRATIONS = os.path.join(os.path.dirname(__file__), 'migrations')
        db = SQLAlchemy()


        class Config(common.TestConfig):
            SERVICE_NAME = 'sample'


        def create_app(url=None):
            app = Flask(__name__)
            app.config.from_object(Config)
            app.config['SQLALCHEMY_DATABASE_URI'] = \\
                url or os.environ['SAMPLE_DATABASE_URL']
            init_service(app)
            db.init_app(app)
            Migrate(app, db, directory=MIGRATIONS)
            return app
    ''',
    'migrations/env.py': '''
        from microflack_common.migration_env import run_migrations

        run_migrations()
    ''',
    f'migrations/versions/{FIRST}_notes.py': f'''
        import os

        import sqlalchemy as sa
        from alembic import op

        revision = {FIRST!r}
        down_revision = None
        branch_labels = depends_on = None


        def upgrade():
            op.create_table('notes', sa.Column('id', sa.Integer,
                                               primary_key=True))
            # Who ran which migration: each must appear exactly once.
            op.create_table('runs', sa.Column('revision', sa.String(20)),
                            sa.Column('pid', sa.Integer))
            op.execute(sa.text("INSERT INTO runs VALUES ('first', :pid)")
                       .bindparams(pid=os.getpid()))


        def downgrade():
            op.drop_table('runs')
            op.drop_table('notes')
    ''',
    f'migrations/versions/{SECOND}_notes_text.py': f'''
        import os
        import time
        from pathlib import Path

        import sqlalchemy as sa
        from alembic import op

        revision = {SECOND!r}
        down_revision = {FIRST!r}
        branch_labels = depends_on = None


        def upgrade():
            op.add_column('notes', sa.Column('text', sa.Text))
            op.execute(sa.text("INSERT INTO runs VALUES ('second', :pid)")
                       .bindparams(pid=os.getpid()))
            # A slow migration, so that the others surely arrive meanwhile;
            # with SAMPLE_GATE it waits until the test opens the gate.
            time.sleep(float(os.environ.get('SAMPLE_SLOW', 0)))
            gate = os.environ.get('SAMPLE_GATE')
            if gate:
                Path(gate + '.started').touch()
                deadline = time.monotonic() + 60
                while not Path(gate + '.open').exists() and \\
                        time.monotonic() < deadline:
                    time.sleep(0.05)


        def downgrade():
            op.drop_column('notes', 'text')
            op.execute("DELETE FROM runs WHERE revision = 'second'")
    ''',
}


@pytest.fixture
def service_dir(tmp_path):
    for name, text in SERVICE.items():
        path = tmp_path / 'service' / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return tmp_path / 'service'


def mariadb_root(sql):
    """Run SQL as MariaDB's root (unix socket authentication)."""
    try:
        subprocess.run(['mariadb', '--protocol=socket', '-uroot'], input=sql,
                       text=True, capture_output=True, check=True, timeout=30)
    except FileNotFoundError:
        pytest.fail('no mariadb client: the test command installs MariaDB')
    except subprocess.CalledProcessError as exc:
        pytest.fail(f'MariaDB refused (the test command starts it): '
                    f'{exc.stderr.strip()}')


@pytest.fixture(scope='session')
def mariadb_password():
    """The test user of the database, with a new password each session."""
    password = secrets.token_urlsafe(18)
    statements = []
    for host in ('localhost', '127.0.0.1'):
        account = f"'{MARIADB_USER}'@'{host}'"
        statements += [f'CREATE USER IF NOT EXISTS {account};',
                       f"ALTER USER {account} IDENTIFIED BY '{password}';",
                       f'GRANT ALL ON {MARIADB_DATABASE}.* TO {account};']
    mariadb_root('\n'.join(statements))
    return password


@pytest.fixture
def mariadb_url(mariadb_password):
    """An empty database for each test."""
    mariadb_root(f'DROP DATABASE IF EXISTS {MARIADB_DATABASE};\n'
                 f'CREATE DATABASE {MARIADB_DATABASE} CHARACTER SET utf8mb4;')
    return (f'mysql+pymysql://{MARIADB_USER}:{mariadb_password}@127.0.0.1:3306/'
            f'{MARIADB_DATABASE}?charset=utf8mb4')


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'sample.sqlite'}"


@pytest.fixture(params=['mariadb', 'sqlite'])
def database_url(request):
    return request.getfixturevalue(f'{request.param}_url')


@contextlib.contextmanager
def held_lock(url):
    """Hold the database's migration lock, as another instance would."""
    url = sa.engine.make_url(url)
    if url.get_backend_name() == 'sqlite':
        with open(sqlite_lock_path(url.database), 'a') as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            yield
        return
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    name = mysql_lock_name(url.database)
    with engine.connect() as connection:
        assert connection.execute(sa.text('SELECT GET_LOCK(:name, 0)'),
                                  {'name': name}).scalar() == 1
        yield
    engine.dispose()


class Instance:
    """One ``flask db-upgrade-locked`` process, its output in a file."""

    def __init__(self, service_dir, url, *args, **env):
        self.log = service_dir / f'upgrade-{uuid.uuid4().hex}.log'
        env = {**os.environ, 'SAMPLE_DATABASE_URL': url, **env}
        with open(self.log, 'w') as output:
            self.process = subprocess.Popen(
                [sys.executable, '-m', 'flask', '--app', 'sample:create_app()',
                 'db-upgrade-locked', *args],
                cwd=service_dir, env=env, stdout=output,
                stderr=subprocess.STDOUT)
        self.pid = self.process.pid

    def output(self):
        return self.log.read_text()

    def wait(self, timeout=60):
        self.process.wait(timeout)
        return self.process.returncode


def runs(url):
    """(revision, pid) of every migration run, and the schema's revision."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            tables = sa.inspect(connection).get_table_names()
            if 'alembic_version' not in tables:
                return [], None
            done = connection.execute(sa.text(
                'SELECT revision, pid FROM runs ORDER BY revision')).all()
            revision = connection.execute(sa.text(
                'SELECT version_num FROM alembic_version')).scalar()
            return [tuple(row) for row in done], revision
    finally:
        engine.dispose()


def test_concurrent_instances_migrate_once(service_dir, database_url):
    instances = [Instance(service_dir, database_url, SAMPLE_SLOW='1')
                 for _ in range(4)]
    assert [instance.wait() for instance in instances] == [0, 0, 0, 0], \
        [instance.output() for instance in instances]
    upgraded = [instance for instance in instances
                if f'upgraded from base (empty) to {SECOND}' in instance.output()]
    assert len(upgraded) == 1
    for instance in instances:
        if instance is not upgraded[0]:
            assert f'database at revision {SECOND}, nothing to do' in \
                instance.output()
    pid = upgraded[0].pid
    assert runs(database_url) == ([('first', pid), ('second', pid)], SECOND)


def test_an_instance_waits_for_the_running_migration(
        service_dir, database_url, tmp_path):
    gate = tmp_path / 'gate'
    first = Instance(service_dir, database_url, SAMPLE_GATE=str(gate))
    assert wait_until(Path(f'{gate}.started').exists, 30), first.output()
    second = Instance(service_dir, database_url)
    assert wait_until(lambda: 'waiting up to 60 s for lock' in second.output(),
                      30), second.output()
    # Held back by the lock: not finished, even though it has nothing to do.
    assert second.process.poll() is None
    Path(f'{gate}.open').touch()
    assert first.wait() == 0 and second.wait() == 0
    assert f'upgraded from base (empty) to {SECOND}' in first.output()
    assert f'database at revision {SECOND}, nothing to do' in second.output()
    assert runs(database_url) == (
        [('first', first.pid), ('second', first.pid)], SECOND)


def test_a_held_lock_times_out_cleanly(service_dir, database_url):
    with held_lock(database_url):
        started = time.monotonic()
        instance = Instance(service_dir, database_url,
                            MIGRATION_LOCK_TIMEOUT='1.5')
        status = instance.wait()
        elapsed = time.monotonic() - started
    output = instance.output()
    assert status == 1, output
    assert 'waiting up to 1.5 s for lock' in output
    [error] = [line for line in output.splitlines()
               if line.startswith('Error:')]
    assert error.startswith('Error: migration lock not available: could not '
                            'get lock ')
    assert 'within 1.5 s' in error and 'MIGRATION_LOCK_TIMEOUT' in error
    assert 'Traceback' not in output
    assert elapsed >= 1.5
    assert runs(database_url) == ([], None)
    # Once the lock is free, the same command migrates.
    instance = Instance(service_dir, database_url)
    assert instance.wait() == 0, instance.output()
    assert runs(database_url)[1] == SECOND


def test_timeout_option_overrides_the_setting(service_dir, sqlite_url):
    with held_lock(sqlite_url):
        instance = Instance(service_dir, sqlite_url, '--timeout', '0',
                            MIGRATION_LOCK_TIMEOUT='600')
        assert instance.wait(timeout=30) == 1
    assert 'within 0 s' in instance.output()


# In-process runs of the command, through Flask's CLI test runner.

@pytest.fixture
def sample(service_dir):
    """The sample service's module, imported from its folder."""
    spec = importlib_util.spec_from_file_location(
        f'sample_{uuid.uuid4().hex}', service_dir / 'sample.py')
    module = importlib_util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def upgrade_in_process(app, *args):
    return app.test_cli_runner().invoke(args=['db-upgrade-locked', *args])


def test_upgrade_from_an_older_revision(sample, sqlite_url, caplog):
    from flask_migrate import upgrade

    caplog.set_level(logging.INFO, logger='microflack_common.migrate')
    app = sample.create_app(sqlite_url)
    with app.app_context():
        upgrade(revision=FIRST)
    result = upgrade_in_process(app)
    assert result.exit_code == 0, result.output
    assert caplog.messages[-1] == f'upgraded from {FIRST} to {SECOND}'
    result = upgrade_in_process(app)
    assert result.exit_code == 0
    assert caplog.messages[-1] == f'database at revision {SECOND}, nothing to do'
    # The lock file stays beside the database (see db_lock).
    assert Path(sqlite_lock_path(app.config['SQLALCHEMY_DATABASE_URI']
                                 .removeprefix('sqlite:///'))).exists()


def test_in_memory_sqlite_needs_no_lock(sample, caplog):
    caplog.set_level(logging.INFO, logger='microflack_common.migrate')
    app = sample.create_app('sqlite://')
    result = upgrade_in_process(app)
    assert result.exit_code == 0, result.output
    assert caplog.messages[-1] == f'upgraded from base (empty) to {SECOND}'
    with app.app_context():
        tables = sa.inspect(sample.db.engine).get_table_names()
    assert {'notes', 'runs', 'alembic_version'} <= set(tables)


def test_a_newer_release_s_revision_is_left_alone(sample, sqlite_url, caplog):
    """An older release starting beside a newer one (or after a roll back)
    finds a revision it does not know: it must still start."""
    caplog.set_level(logging.INFO, logger='microflack_common.migrate')
    app = sample.create_app(sqlite_url)
    assert upgrade_in_process(app).exit_code == 0
    with app.app_context(), sample.db.engine.begin() as connection:
        connection.execute(sa.text(
            "UPDATE alembic_version SET version_num = 'c3c3c3c3c3c3'"))
    result = upgrade_in_process(app)
    assert result.exit_code == 0, result.output
    [record] = [record for record in caplog.records
                if 'c3c3c3c3c3c3' in record.getMessage()]
    assert record.levelno == logging.WARNING
    assert record.getMessage() == (
        f'database at revision c3c3c3c3c3c3, which this release does not '
        f'know (its head is {SECOND}): migrated by a newer release, left as '
        'it is')


def test_a_service_without_migrations_is_refused(app):
    result = app.test_cli_runner().invoke(args=['db-upgrade-locked'])
    assert result.exit_code == 1
    assert result.output.strip() == ('Error: this service has no database '
                                     'migrations (Flask-Migrate is not set up)')


def test_lock_names():
    assert mysql_lock_name('users') == 'microflack.migrate.users'
    long_names = [mysql_lock_name('x' * 80), mysql_lock_name('x' * 81)]
    assert all(len(name) <= 64 for name in long_names)
    assert long_names[0] != long_names[1]
    assert sqlite_lock_path('/data/users.sqlite') == \
        '/data/users.sqlite.migrate.lock'


def test_other_databases_are_refused():
    class Engine:
        url = sa.engine.make_url('postgresql://u:p@127.0.0.1/db')
    with pytest.raises(LockUnsupported, match='postgresql'), \
            database_lock(Engine(), 1):
        pass
