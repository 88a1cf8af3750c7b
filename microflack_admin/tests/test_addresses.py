"""Addresses are settings (issue 17, part 5): a platform installed by
setup-all-in-one.sh whose MariaDB, Redis and own address are not the
defaults. The test starts a private ``mariadbd`` (its own data directory,
socket and port) and a private ``redis-server`` on free ports, and gives
the platform MICROFLACK_IP=127.0.0.2: its users and messages, its pushes
and its instances must all go there, and nothing to the host's MariaDB
(127.0.0.1:3306) or Redis (127.0.0.1:6379). The messages service gets a
whole URL of its own (MESSAGES_DATABASE_URL), a database the test made;
users gets the one the scripts make on DB_HOST:DB_PORT."""
import os
import shutil
import subprocess
import threading
import time
import uuid

import pytest
import socketio
from mfplatform import ADMIN, CHECKOUT_TAG, Platform
from private_platform import free_port, mariadb_admin

from microflack_common.polling import wait_until

# Not 127.0.0.1: nothing of the platform may assume it.
ADDRESS = '127.0.0.2'
DB_PREFIX = f'mfaddr{CHECKOUT_TAG}_'
# The operator's own database for messages (MESSAGES_DATABASE_URL).
OWN_DATABASE, OWN_USER, OWN_PASSWORD = 'chat_messages', 'chat', 'chat-pw'
WAIT = 10

pytestmark = pytest.mark.skipif(
    not (shutil.which('mariadbd') or shutil.which('/usr/sbin/mariadbd'))
    or not shutil.which('mariadb-install-db')
    or not shutil.which('redis-server'),
    reason='needs mariadbd, mariadb-install-db and redis-server')


class PrivateMariaDB:
    """A mariadbd of the test's own: data directory, socket and a free port
    on 127.0.0.1, its administrator root on that socket (``admin_cnf``,
    a client option file). ``stop`` ends only the process it started."""

    def __init__(self, folder):
        self.folder = folder
        self.port = free_port()
        self.socket = folder / 'mysqld.sock'
        self.admin_cnf = folder / 'admin.cnf'
        self.admin_cnf.write_text(
            f'[client]\nprotocol=socket\nsocket={self.socket}\nuser=root\n')
        subprocess.run(
            ['mariadb-install-db', '--no-defaults', f'--datadir={folder}/data',
             '--user=root', '--auth-root-authentication-method=socket',
             '--skip-test-db'],
            check=True, capture_output=True, timeout=120)
        mariadbd = shutil.which('mariadbd') or '/usr/sbin/mariadbd'
        self.log = open(folder / 'mariadbd.out', 'wb')  # noqa: SIM115
        self.process = subprocess.Popen(
            [mariadbd, '--no-defaults', '--user=root',
             f'--datadir={folder}/data', f'--socket={self.socket}',
             f'--port={self.port}', '--bind-address=127.0.0.1',
             f'--pid-file={folder}/mariadbd.pid',
             f'--log-error={folder}/mariadbd.err', '--skip-log-bin'],
            stdout=self.log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL)
        if not wait_until(lambda: self.answers() or self.process.poll()
                          is not None, 30, 0.2) or not self.answers():
            self.stop()
            raise RuntimeError('the private mariadbd did not start: ' + (
                folder / 'mariadbd.err').read_text(errors='replace')[-2000:])

    def sql(self, statement, database=None):
        """Rows of ``statement`` (tab-separated columns)."""
        args = ['-N', '-B', '-e', statement]
        if database:
            args.append(database)
        out = subprocess.run(mariadb_admin(*args, admin_cnf=self.admin_cnf),
                             capture_output=True, text=True, check=True,
                             timeout=30).stdout
        return [line.split('\t') for line in out.splitlines()]

    def answers(self):
        try:
            return self.sql('SELECT @@port') == [[str(self.port)]]
        except subprocess.SubprocessError:
            return False

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.log.close()


class PrivateRedis:
    """A redis-server of the test's own on a free 127.0.0.1 port."""

    def __init__(self, folder):
        self.port = free_port()
        self.address = f'127.0.0.1:{self.port}'
        self.process = subprocess.Popen(
            ['redis-server', '--port', str(self.port), '--bind', '127.0.0.1',
             '--save', '', '--appendonly', 'no', '--dir', str(folder)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL)
        if not wait_until(lambda: self.cli('PING') == 'PONG', 15, 0.1):
            self.stop()
            raise RuntimeError('the private redis-server did not start')

    def cli(self, *args, port=None):
        result = subprocess.run(
            ['redis-cli', '-h', '127.0.0.1', '-p', str(port or self.port),
             *args], capture_output=True, text=True, timeout=10)
        return result.stdout.strip() if result.returncode == 0 else None

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(15)


def host_mariadb_databases():
    """The databases of the host's MariaDB (as root on its socket)."""
    out = subprocess.run(mariadb_admin('-N', '-e', 'SHOW DATABASES'),
                         capture_output=True, text=True, check=True,
                         timeout=30).stdout
    return set(out.split())


def own_database_url(mariadb):
    return (f'mysql+pymysql://{OWN_USER}:{OWN_PASSWORD}@127.0.0.1:'
            f'{mariadb.port}/{OWN_DATABASE}?charset=utf8mb4')


@pytest.fixture(scope='module')
def elsewhere(tmp_path_factory):
    """(platform, mariadb, redis): a platform on MICROFLACK_IP=127.0.0.2
    whose database and Redis are the test's private ones."""
    folder = tmp_path_factory.mktemp('mfaddr')
    mariadb = PrivateMariaDB(folder)
    redis = platform = None
    try:
        redis = PrivateRedis(folder)
        mariadb.sql(
            f"CREATE DATABASE {OWN_DATABASE}; "
            f"CREATE USER '{OWN_USER}'@'127.0.0.1' "
            f"IDENTIFIED BY '{OWN_PASSWORD}'; "
            f"GRANT ALL ON {OWN_DATABASE}.* TO '{OWN_USER}'@'127.0.0.1'")
        platform = Platform(folder / 'home', {
            'MICROFLACK_IP': ADDRESS, 'MF_DB_PREFIX': DB_PREFIX,
            'DB_HOST': '127.0.0.1', 'DB_PORT': str(mariadb.port),
            'DB_ADMIN_CNF': str(mariadb.admin_cnf), 'REDIS': redis.address,
            'MESSAGES_DATABASE_URL': own_database_url(mariadb)})
        platform.install()
        yield platform, mariadb, redis
    finally:
        if platform is not None:
            platform.remove()
        if redis is not None:
            redis.stop()
        mariadb.stop()


def test_the_settings_are_saved(elsewhere):
    platform, mariadb, redis = elsewhere
    conf = (platform.home / 'microflack.conf').read_text().splitlines()
    for name, value in [('MICROFLACK_IP', ADDRESS), ('INSTANCE_BIND', ADDRESS),
                        ('LB_BIND', ADDRESS), ('LOGS_BIND', ADDRESS),
                        ('DB_PORT', str(mariadb.port)),
                        ('DB_ADMIN_CNF', str(mariadb.admin_cnf)),
                        ('REDIS', redis.address)]:
        assert f'{name}=${{{name}:-{value}}}' in conf, name
    # A second run changes nothing (and writes no setting twice).
    platform.install()
    again = (platform.home / 'microflack.conf').read_text().splitlines()
    assert [line for line in again if not line.startswith(
        'MICROFLACK_RUNTIME=')] == [line for line in conf if not
                                    line.startswith('MICROFLACK_RUNTIME=')]


def test_instances_register_and_listen_on_the_platforms_address(elsewhere):
    platform = elsewhere[0]
    records = platform.instance_records()
    assert len(records) == 5
    for name, record in records.items():
        assert record['ADDRESS'] == f"{ADDRESS}:{record['PORT']}"
        service = record['SERVICE']
        assert platform.registry(f'/services/{service}/upstream')[name] \
            == record['ADDRESS']
        env = (platform.home / 'run' / 'instances' / f'{name}.env').read_text()
        assert f"SERVICE_BIND={ADDRESS}:{record['PORT']}" in env.splitlines()
        rv = platform.http.get(f"http://{record['ADDRESS']}/health",
                               timeout=5)
        assert rv.status_code == 200
    # The services' database URLs name the private MariaDB: the one the
    # scripts built for users, the operator's own for messages.
    def database_url(service):
        [name] = platform.instance_records(service)
        env = platform.home / 'run' / 'instances' / f'{name}.env'
        return subprocess.run(
            ['bash', '-c', 'source "$1" && printf %s "$DATABASE_URL"', '-',
             str(env)], capture_output=True, text=True, check=True).stdout
    assert f'@127.0.0.1:{platform.env["DB_PORT"]}/{DB_PREFIX}users?' \
        in database_url('users')
    assert database_url('messages') == platform.env['MESSAGES_DATABASE_URL']


def test_users_and_messages_live_in_the_private_mariadb(elsewhere):
    platform, mariadb, _ = elsewhere
    lb, http = platform.lb, platform.http
    assert lb == f"http://{ADDRESS}:{platform.env['LB_PORT']}"
    nickname = f'addr{uuid.uuid4().hex[:8]}'
    token = platform.user_with_token(nickname)
    auth = {'Authorization': f'Bearer {token}'}
    marker = uuid.uuid4().hex
    rv = http.post(f'{lb}/api/messages', headers=auth, timeout=10,
                   json={'source': f'elsewhere *{marker}*'})
    assert rv.status_code == 201, rv.text
    message_id = rv.json()['id']
    rv = http.get(f'{lb}/api/messages/{message_id}', timeout=10)
    assert rv.json()['html'] == f'elsewhere <em>{marker}</em>'
    # Stored in the private server's databases ...
    assert mariadb.sql(f"SELECT nickname FROM users WHERE "
                       f"nickname = '{nickname}'",
                       f'{DB_PREFIX}users') == [[nickname]]
    assert mariadb.sql(f'SELECT id FROM messages WHERE id = {message_id}',
                       OWN_DATABASE) == [[str(message_id)]]
    # No database was made for the service given a URL.
    assert [f'{DB_PREFIX}users'] == [
        name for [name] in mariadb.sql('SHOW DATABASES')
        if name.startswith(DB_PREFIX)]
    # ... and none of them on the host's MariaDB.
    assert not any(name.startswith(DB_PREFIX)
                   for name in host_mariadb_databases())


def test_pushes_go_through_the_private_redis(elsewhere):
    platform, _, redis = elsewhere
    channel = platform.env['REDIS_CHANNEL']
    events = []
    arrived = threading.Event()
    marker = uuid.uuid4().hex
    client = socketio.Client(reconnection=False)

    @client.on('updated_model')
    def updated(data):
        events.append(data)
        if marker in str(data):
            arrived.set()

    client.connect(platform.lb, transports=['websocket'],
                   socketio_path='/socket.io', wait_timeout=WAIT)
    try:
        token = platform.user_with_token(f'push{uuid.uuid4().hex[:8]}')
        time.sleep(0.5)
        rv = platform.http.post(
            f'{platform.lb}/api/messages', timeout=10, json={'source': marker},
            headers={'Authorization': f'Bearer {token}'})
        assert rv.status_code == 201, rv.text
        assert arrived.wait(WAIT), events
        # The socketio instance listens on the private Redis, not the
        # host's.
        subscribed = redis.cli('PUBSUB', 'NUMSUB', channel).split()
        assert subscribed[0] == channel and int(subscribed[1]) >= 1
        host = redis.cli('PUBSUB', 'NUMSUB', channel, port=6379)
        assert host is None or host.split() == [channel, '0']
    finally:
        client.disconnect()


def test_the_log_stream_is_served_on_the_platforms_address(elsewhere):
    platform = elsewhere[0]
    assert platform.logs.startswith(f'http://{ADDRESS}:')
    auth = (platform.secret('LOGS_USER'), platform.secret('LOGS_PASSWORD'))
    rv = platform.http.get(platform.logs, auth=auth, timeout=5,
                           params={'follow': 0, 'lines': 1})
    assert rv.status_code == 200


def scripts(snippet, **settings):
    """``snippet`` run by bash after the admin scripts' libraries, with
    ``settings`` (and nothing of this host's installation)."""
    env = {'PATH': os.environ['PATH'], 'HOME': os.environ.get('HOME', '/'),
           'MF_HOME': '/nonexistent/mf-home', **settings}
    return subprocess.run(
        ['bash', '-c', f'source {ADMIN}/lib/common.sh && '
         f'source {ADMIN}/lib/daemons.sh && source {ADMIN}/lib/instances.sh'
         f' && {snippet}'], env=env, capture_output=True, text=True,
        timeout=30)


def test_database_urls_follow_the_settings():
    built = scripts('database_url users', USERS_DB_PASSWORD='pw',
                    DB_HOST='192.0.2.1', DB_PORT='3307').stdout
    assert built == ('mysql+pymysql://microflack_users:pw@192.0.2.1:3307/'
                     'microflack_users?charset=utf8mb4\n')
    given = 'mysql+pymysql://u:p@db.example:3310/chat?charset=utf8mb4'
    assert scripts('database_url users', USERS_DATABASE_URL=given).stdout \
        == given + '\n'
    default = scripts('database_url messages', MESSAGES_DB_PASSWORD='pw')
    assert '@127.0.0.1:3306/microflack_messages?' in default.stdout


def test_database_users_connect_from_where_the_database_sees_them():
    assert scripts('db_client_hosts').stdout.split() == \
        ['localhost', '127.0.0.1']
    assert scripts('db_client_hosts', DB_HOST='127.0.0.3').stdout.split() \
        == ['localhost', '127.0.0.1', '127.0.0.3']
    assert scripts('db_client_hosts', DB_HOST='192.0.2.1').stdout.split() \
        == ['%']


def test_no_other_mariadb_is_started_or_mistaken_for_this_hosts(tmp_path):
    """A database elsewhere that does not answer is an error saying so
    (never this host's MariaDB instead, never one started)."""
    result = scripts('ensure_mariadb', DB_HOST='127.0.0.1',
                     DB_PORT=str(free_port()))
    assert result.returncode != 0
    assert 'no MariaDB answers the administrator' in result.stderr
    assert 'give DB_ADMIN_CNF' in result.stderr
    result = scripts('ensure_mariadb',
                     DB_ADMIN_CNF=str(tmp_path / 'missing.cnf'))
    assert result.returncode != 0
    assert 'no such readable file' in result.stderr
