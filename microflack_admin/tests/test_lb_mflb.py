"""bin/mflb: start, stop, status, reload of the load balancer, with a
private MF_HOME, the session's etcd and a free port on 127.0.0.1."""
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import urllib3
from mfplatform import clean_environ

from conftest import ADMIN
from microflack_common.testing import (
    free_port,
    seconds_until,
    wait_for_port,
    wait_until,
)

MFLB = ADMIN / 'bin' / 'mflb'
ROOT = ADMIN.parent


def wheelhouse():
    """The test command's wheelhouse (it holds microflack_common)."""
    for path in (os.environ.get('WHEELHOUSE'),
                 str(ROOT / '.test-home' / 'wheelhouse')):
        if path and list(Path(path).glob('microflack_common-*.whl')):
            return path
    pytest.fail('no wheelhouse with microflack_common: run '
                'microflack_admin/bin/mfbuild common')


def environment(mf_home, etcd_url, **changes):
    env = clean_environ()
    env.update(MF_HOME=str(mf_home), WHEELHOUSE=wheelhouse(), ETCD=etcd_url,
               LB_BIND='127.0.0.1', LB_PORT=str(free_port()),
               LB_HTTPS_PORT=str(free_port()),
               STATS_USER='admin', STATS_PASSWORD='pass#word:1')
    env.update(changes)
    return {name: value for name, value in env.items() if value is not None}


def mflb(env, *args):
    return subprocess.run([str(MFLB), *args], env=env, capture_output=True,
                          text=True, timeout=120)


def pid_in(path):
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def alive(pid):
    try:
        with open(f'/proc/{pid}/stat') as file:
            return file.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except (OSError, IndexError):
        return False


@pytest.fixture(scope='module')
def lb_env(tmp_path_factory, etcd_server):
    """An environment for mflb; whatever it started is stopped after."""
    mf_home = tmp_path_factory.mktemp('mf_home')
    env = environment(mf_home, etcd_server.url)
    yield env
    mflb(env, 'stop')
    for name in ('watcher.pid', 'haproxy.pid'):
        pid = pid_in(mf_home / 'lb' / name)
        if pid and alive(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize('args', [(), ('bogus',), ('start', 'extra'),
                                  ('--help',), ('stop', 'now')])
def test_bad_arguments(tmp_path, etcd_server, args):
    result = mflb(environment(tmp_path, etcd_server.url), *args)
    assert result.returncode == 2
    assert result.stderr.startswith('usage: mflb start|stop|status|reload')
    assert not (tmp_path / 'lb').exists()


@pytest.mark.parametrize('changes, message', [
    ({'STATS_PASSWORD': None}, 'STATS_PASSWORD'),
    ({'STATS_USER': ''}, 'STATS_USER'),
    ({'LB_PORT': '70000'}, 'LB_PORT'),
    ({'LB_PORT': 'http'}, 'LB_PORT'),
    ({'LB_THREADS': '0'}, 'LB_THREADS'),
    ({'LB_THREADS': 'two'}, 'LB_THREADS'),
])
def test_start_refuses_missing_settings(tmp_path, etcd_server, changes,
                                        message):
    env = environment(tmp_path, etcd_server.url, **changes)
    result = mflb(env, 'start')
    assert result.returncode == 1
    assert message in result.stderr
    assert not (tmp_path / 'lb').exists()
    assert not (tmp_path / 'admin-venv').exists()


def parent_of(pid):
    try:
        stat = Path(f'/proc/{pid}/stat').read_text()
    except OSError:
        return None
    return int(stat.rsplit(')', 1)[1].split()[1])


def threads_of(pid):
    status = Path(f'/proc/{pid}/status').read_text()
    return int(re.search(r'^Threads:\s+(\d+)', status, re.M).group(1))


def test_start_twice_then_stop(lb_env, etcd, backends):
    home = lb_env['MF_HOME']
    port = int(lb_env['LB_PORT'])
    first = mflb(lb_env, 'start')
    assert first.returncode == 0, first.stderr
    wait_for_port(port)
    status = mflb(lb_env, 'status')
    assert status.returncode == 0, status.stdout
    assert f'on 127.0.0.1:{port}' in status.stdout
    lb_dir = Path(home, 'lb')
    haproxy = pid_in(lb_dir / 'haproxy.pid')
    watcher = pid_in(lb_dir / 'watcher.pid')
    assert alive(haproxy) and alive(watcher)
    # One HAProxy thread by default (LB_THREADS).
    assert 'nbthread 1' in (lb_dir / 'haproxy.cfg').read_text()
    [worker] = [pid for pid in map(int, filter(str.isdigit, os.listdir('/proc')))
                if parent_of(pid) == haproxy]
    assert threads_of(worker) == 1

    # It routes what the registry says.
    backend = backends('users_1')
    etcd.put('/services/users/location', '/api/users')
    etcd.put('/services/users/upstream/users_1', backend.address)
    http = urllib3.PoolManager(retries=False)

    def routed():
        try:
            response = http.request(
                'GET', f'http://127.0.0.1:{port}/api/users', timeout=2,
                headers={'Connection': 'close'})
        except urllib3.exceptions.HTTPError:
            return False
        return response.data == b'users_1 GET /api/users\n'
    assert wait_until(routed, 5) is not None
    # A request the client gave up on is logged with its termination state
    # (C: the client aborted); a request that succeeded is not (the 503s
    # before the backend was routed are).
    log = Path(home, 'logs', 'lb.log')
    logged_gets = log.read_text().count('"GET /api/users HTTP/1.1"')
    assert routed()
    with socket.create_connection(('127.0.0.1', port)) as client:
        client.sendall(b'POST /api/users HTTP/1.1\r\nHost: lb\r\n'
                       b'Content-Length: 100\r\n\r\npartial')
    # Its body never came whole, so it never reached the server
    # (option http-buffer-request): <NOSRV>.
    aborted = re.compile(r'^127\.0\.0\.1:\d+ \[.*\] http \S+/'
                         r'<NOSRV> \S+ -?\d+ \d+ - - C\S{3} .* '
                         r'"POST /api/users HTTP/1\.1"$', re.M)
    assert wait_until(lambda: aborted.search(log.read_text()), 5) is not None, \
        log.read_text()[-2000:]
    assert log.read_text().count('"GET /api/users HTTP/1.1"') == logged_gets
    auth = urllib3.make_headers(basic_auth='admin:pass#word:1')
    assert http.request('GET', f'http://127.0.0.1:{port}/stats',
                        headers=auth).status == 200

    second = mflb(lb_env, 'start')
    assert second.returncode == 0, second.stderr
    assert 'already running' in second.stderr
    assert pid_in(lb_dir / 'haproxy.pid') == haproxy
    assert pid_in(lb_dir / 'watcher.pid') == watcher

    reloads = log.read_text().count(' reloading')
    assert mflb(lb_env, 'reload').returncode == 0
    assert wait_until(lambda: log.read_text().count(' reloading') > reloads,
                      5) is not None

    stop = mflb(lb_env, 'stop')
    assert stop.returncode == 0, stop.stderr
    assert not alive(haproxy) and not alive(watcher)
    assert mflb(lb_env, 'status').returncode == 3
    again = mflb(lb_env, 'stop')
    assert again.returncode == 0 and 'not running' in again.stderr
    assert mflb(lb_env, 'reload').returncode == 1


def test_every_writer_appends_to_the_log(lb_env, etcd):
    """HAProxy's lines and the watcher's share lb.log (issue 15, finding
    9): HAProxy made its output non-blocking, which dropped O_APPEND, and
    wrote its lines at its own offset, over those the watcher appended."""
    port = int(lb_env['LB_PORT'])
    log = Path(lb_env['MF_HOME'], 'logs', 'lb.log')
    http = urllib3.PoolManager(retries=False)
    rounds = range(6)
    try:
        assert mflb(lb_env, 'start').returncode == 0
        wait_for_port(port)
        def logged(text):
            return wait_until(lambda: text in log.read_text(), 5) is not None
        for n in rounds:
            # The watcher warns about a malformed entry...
            etcd.put(f'/services/broken{n}/location', 'not a path')
            assert logged(f'/services/broken{n}/location')
            # ... and HAProxy logs a request nothing routes (a 503).
            assert http.request('GET', f'http://127.0.0.1:{port}/nowhere{n}',
                                headers={'Connection': 'close'}).status == 503
            assert logged(f'"GET /nowhere{n} HTTP/1.1"')
        text = log.read_text()
        for n in rounds:
            assert f'/services/broken{n}/location' in text, text
            assert f'"GET /nowhere{n} HTTP/1.1"' in text, text
    finally:
        mflb(lb_env, 'stop')
        for n in rounds:
            etcd.delete_prefix(f'/services/broken{n}/')


def test_start_fails_cleanly_when_the_port_is_taken(lb_env):
    with socket.socket() as taken:
        taken.bind(('127.0.0.1', 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = dict(lb_env, LB_PORT=str(port))
        start = time.monotonic()
        result = mflb(env, 'start')
        assert result.returncode == 1
        assert 'HAProxy did not start' in result.stderr
        assert time.monotonic() - start < 5
    status = mflb(env, 'status')
    assert status.returncode == 3
    assert 'haproxy: not running' in status.stdout
    assert 'watcher: not running' in status.stdout


def test_a_killed_haproxy_or_watcher_is_started_again(lb_env, etcd,
                                                      backends):
    """Both run under the platform's supervisor (issue 15, finding 3):
    HAProxy killed outright serves again within 5 s, without an operator;
    a killed watcher is back and routes what the registry says."""
    port = int(lb_env['LB_PORT'])
    lb_dir = Path(lb_env['MF_HOME'], 'lb')
    backend = backends('users_1')
    etcd.put('/services/users/location', '/api/users')
    etcd.put('/services/users/upstream/users_1', backend.address)
    http = urllib3.PoolManager(retries=False)

    def routed(name):
        try:
            response = http.request(
                'GET', f'http://127.0.0.1:{port}/api/users', timeout=1,
                headers={'Connection': 'close'})
        except urllib3.exceptions.HTTPError:
            return False
        return response.data == f'{name} GET /api/users\n'.encode()
    try:
        assert mflb(lb_env, 'start').returncode == 0
        assert wait_until(lambda: routed('users_1'), 5) is not None
        haproxy = pid_in(lb_dir / 'haproxy.pid')
        os.kill(haproxy, signal.SIGKILL)

        def new_haproxy_serving():
            # The killed master's workers may answer for a moment before
            # they notice: serving again means a new master, serving.
            pid = pid_in(lb_dir / 'haproxy.pid')
            return pid not in (None, haproxy) and alive(pid) \
                and routed('users_1')
        back = seconds_until(new_haproxy_serving, 10)
        assert back is not None and back < 5, back
        print(f'HAProxy killed: serving again after {back:.2f} s')

        watcher = pid_in(lb_dir / 'watcher.pid')
        os.kill(watcher, signal.SIGKILL)
        assert wait_until(lambda: alive(pid_in(lb_dir / 'watcher.pid') or 0)
                          and pid_in(lb_dir / 'watcher.pid') != watcher,
                          10) is not None
        other = backends('users_2')
        etcd.delete('/services/users/upstream/users_1')
        etcd.put('/services/users/upstream/users_2', other.address)
        assert wait_until(lambda: routed('users_2'), 5) is not None
        assert mflb(lb_env, 'status').returncode == 0
    finally:
        mflb(lb_env, 'stop')
        etcd.delete_prefix('/services/users/')
    # Stopped for good: nothing starts them again, and the supervisor,
    # with nothing left to run, is gone.
    time.sleep(2)
    assert mflb(lb_env, 'status').returncode == 3
    assert not Path(lb_env['MF_HOME'], 'run', 'supervisor.sock').exists()
