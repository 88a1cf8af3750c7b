"""One rule for a build's tag (microflack_common/names.py): mfbuild, mfrun
and mfupgrade ask it, an instance named after an accepted tag registers,
a Docker image can carry it. No platform needed: a bad tag is refused
before anything is built or started."""
import os
import re
import subprocess

import pytest

from microflack_common.names import valid

ADMIN = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Docker's grammar of an image tag.
DOCKER_TAG = re.compile(r'[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}')

GOOD = ['1.1.0', '1.1.0-rc1', '2', 'v3.0.0.post1', 'A' * 32, '0.0.1-dev-x']
BAD = ['1.1.0+rc1', '1.1.0_rc1', '-1', '.1', 'a/b', '1 2', 'é', '',
       'A' * 33, 'latest', '1.1.0\n']


def script(tmp_path, *args):
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(('LB', 'MICROFLACK_', 'ETCD', 'MF_'))}
    # An etcd nobody listens on: a script that got past the tag says so.
    env.update(MF_HOME=str(tmp_path), ETCD='http://127.0.0.1:9')
    return subprocess.run([os.path.join(ADMIN, 'bin', args[0]), *args[1:]],
                          env=env, capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize('tag', GOOD + BAD)
def test_mfbuild_asks_the_rule(tmp_path, tag):
    # --from a ref that is no commit: an accepted tag stops there, after
    # the tag's check and before any build.
    result = script(tmp_path, 'mfbuild', '--from', 'no-such-ref', '--tag', tag,
                    'tokens')
    if tag == '':
        assert result.returncode == 2 and '--tag needs a value' in result.stderr
    elif valid('tag', tag):
        assert result.returncode == 1
        assert "'no-such-ref' is not a commit" in result.stderr
    else:
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith('usage: mfbuild')
        assert f'bad tag {tag!r}' in result.stderr
    assert 'Traceback' not in result.stderr
    assert not (tmp_path / 'releases').exists()


@pytest.mark.parametrize('tag', ['1.1.0+rc1', 'latest'])
def test_mfrun_and_mfupgrade_refuse_a_bad_tag(tmp_path, tag):
    result = script(tmp_path, 'mfrun', 'tokens', tag)
    assert result.returncode == 2
    assert result.stderr.startswith('usage: mfrun')
    assert f'bad tag {tag!r}' in result.stderr
    result = script(tmp_path, 'mfupgrade', 'try', 'tokens', tag)
    assert result.returncode == 1
    assert f'mfupgrade: error: bad tag {tag!r}' in result.stderr


@pytest.mark.parametrize('tag', GOOD)
def test_an_accepted_tag_fits_everywhere(tag):
    assert DOCKER_TAG.fullmatch(tag)
    # mfrun's instance name, with the longest service and a host id of
    # twelve characters, is one the registry and the load balancer take.
    for service in ('ui', 'users', 'tokens', 'messages', 'socketio'):
        assert valid('instance', f'{service}_v{tag}_abcdefghijkl_65535')


def test_names_py_runs_alone():
    # The scripts run the file with any python3, before anything is
    # installed: it needs nothing but the standard library.
    names = os.path.join(os.path.dirname(ADMIN), 'microflack_common', 'src',
                         'microflack_common', 'names.py')
    ok = subprocess.run(['python3', '-I', names, 'tag', '1.1.0-rc1'],
                        capture_output=True, text=True)
    assert (ok.returncode, ok.stdout, ok.stderr) == (0, '', '')
    bad = subprocess.run(['python3', '-I', names, 'tag', '1.1.0+rc1'],
                         capture_output=True, text=True)
    assert bad.returncode == 1 and 'bad tag' in bad.stderr
