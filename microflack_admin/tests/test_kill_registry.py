"""mfkill and the registry: a key it could not delete is a failure, said
on stderr and in the exit status; a key already gone is none. No
platform needed: the instance is a process recorded in a private MF_HOME
(as mfrun records a native one)."""
import os
import subprocess
import time

import pytest

from microflack_common.testing import free_port

ADMIN = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INSTANCE = 'tokens_v1.0.0_testhost_5999'


def mfkill(home, etcd_url, *args):
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(('LB', 'MICROFLACK_', 'ETCD', 'MF_'))}
    env.update(MF_HOME=str(home), ETCD=etcd_url, STOP_TIMEOUT='5')
    return subprocess.run([os.path.join(ADMIN, 'bin', 'mfkill'), *args],
                          env=env, capture_output=True, text=True,
                          timeout=60)


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def instance(tmp_path):
    """A recorded native instance: a process that is not our child (so
    that it leaves no zombie for mfkill to wait on)."""
    pid = int(subprocess.run(['sh', '-c', 'sleep 120 >/dev/null 2>&1 & echo $!'],
                             capture_output=True, text=True,
                             check=True).stdout)
    records = tmp_path / 'run' / 'instances'
    records.mkdir(parents=True)
    (records / f'{INSTANCE}.info').write_text(
        f'SERVICE=tokens\nTAG=1.0.0\nPORT=5999\nRUNTIME=native\nPID={pid}\n'
        f'SUPERVISED=\n')
    yield pid
    if alive(pid):
        os.kill(pid, 9)


def wait_gone(pid, timeout=5):
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not alive(pid)


def test_a_registry_that_cannot_be_told_fails_mfkill(tmp_path, instance):
    dead = f'http://127.0.0.1:{free_port()}'
    result = mfkill(tmp_path, dead, 'tokens')
    assert result.returncode == 1
    assert (f'cannot delete /services/tokens/upstream/{INSTANCE} from the '
            f'registry at {dead}: cannot connect') in result.stderr
    assert f'mfkill: error: {INSTANCE} stopped, but the registry could not ' \
        'be told' in result.stderr
    # The instance is stopped all the same.
    assert result.stdout == f'{INSTANCE}\n'
    assert wait_gone(instance)
    assert not (tmp_path / 'run' / 'instances' / f'{INSTANCE}.info').exists()


def test_mfkill_all_does_not_say_cleared_when_it_did_not(tmp_path):
    result = mfkill(tmp_path, f'http://127.0.0.1:{free_port()}', 'all')
    assert result.returncode == 1
    assert 'registry cleared' not in result.stderr
    assert 'mfkill: error: the registry was not cleared' in result.stderr
    assert 'Traceback' not in result.stderr


def test_with_etcd_answering(tmp_path, instance, etcd, etcd_server):
    etcd.put(f'/services/tokens/upstream/{INSTANCE}', '127.0.0.1:5999')
    etcd.put('/services/users/upstream/users_1', '127.0.0.1:5998')
    result = mfkill(tmp_path, etcd_server.url, 'tokens')
    assert (result.returncode, result.stdout) == (0, f'{INSTANCE}\n')
    assert 'error' not in result.stderr
    assert etcd.get_prefix('/services/tokens/upstream/').kvs == []
    assert wait_gone(instance)
    result = mfkill(tmp_path, etcd_server.url, 'all')
    assert result.returncode == 0
    assert 'registry cleared' in result.stderr
    assert etcd.get_prefix('/services/').kvs == []
    # Nothing left to delete is no failure.
    result = mfkill(tmp_path, etcd_server.url, 'all')
    assert result.returncode == 0, result.stderr
