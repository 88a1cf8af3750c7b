"""The real hosts' role scripts of a platform on several hosts (issue 18):
setup-registry.sh, setup-lb.sh and setup-store.sh write the system's
configuration (/etc/default/etcd, keepalived.conf, MariaDB's and Redis's)
from the same generators (lib/roles.sh) that mfcluster's hosts run with;
here, what they would write (--print) and how they refuse bad settings.
They are never run for real here: they configure this machine's services.
"""
import secrets
import subprocess
from pathlib import Path

import pytest
from cluster_scenarios import free_subnet
from mfplatform import clean_environ

INSTALL = Path(__file__).resolve().parent.parent / 'install'
MEMBERS = 'r1=127.0.0.2,r2=127.0.0.3,r3=127.0.0.4'


def role(script, *args, **settings):
    env = {**clean_environ(), 'MF_HOME': '/nonexistent/mf-home', **settings}
    return subprocess.run([str(INSTALL / script), *args], env=env,
                          capture_output=True, text=True, timeout=30)


def test_a_registry_member_settings():
    result = role('setup-registry.sh', '--print', MICROFLACK_IP='127.0.0.3',
                  REGISTRY_MEMBERS=MEMBERS)
    assert result.returncode == 0, result.stderr
    settings = dict(line.split('=', 1) for line in result.stdout.splitlines()
                    if not line.startswith('#'))
    assert settings == {
        'ETCD_ENABLE_V2': '"false"',
        'ETCD_NAME': '"r2"',
        'ETCD_DATA_DIR': '"/var/lib/etcd/microflack"',
        'ETCD_LISTEN_CLIENT_URLS': '"http://127.0.0.3:2379,http://127.0.0.1:2379"',
        'ETCD_ADVERTISE_CLIENT_URLS': '"http://127.0.0.3:2379"',
        'ETCD_LISTEN_PEER_URLS': '"http://127.0.0.3:2380"',
        'ETCD_INITIAL_ADVERTISE_PEER_URLS': '"http://127.0.0.3:2380"',
        'ETCD_INITIAL_CLUSTER': '"r1=http://127.0.0.2:2380,'
                                'r2=http://127.0.0.3:2380,r3=http://127.0.0.4:2380"',
        'ETCD_INITIAL_CLUSTER_TOKEN': '"microflack"',
        'ETCD_INITIAL_CLUSTER_STATE': '"new"',
        'ETCD_HEARTBEAT_INTERVAL': '"100"',
        'ETCD_ELECTION_TIMEOUT': '"500"',
    }
    # The member's name may be given instead of being found by address.
    named = role('setup-registry.sh', '--print', MICROFLACK_IP='127.0.0.9',
                 REGISTRY_MEMBERS=MEMBERS, REGISTRY_NAME='r3')
    assert 'ETCD_NAME="r3"' in named.stdout
    assert 'ETCD_LISTEN_PEER_URLS="http://127.0.0.4:2380"' in named.stdout


@pytest.mark.parametrize('settings, said', [
    ({'MICROFLACK_IP': '127.0.0.9', 'REGISTRY_MEMBERS': MEMBERS},
     'this host (127.0.0.9) is not in REGISTRY_MEMBERS'),
    ({'MICROFLACK_IP': '127.0.0.2', 'REGISTRY_MEMBERS': '127.0.0.2'},
     'REGISTRY_MEMBERS must list every member'),
    ({'MICROFLACK_IP': '127.0.0.2'}, 'REGISTRY_MEMBERS must list'),
])
def test_a_registry_member_refuses_bad_settings(settings, said):
    result = role('setup-registry.sh', '--print', **settings)
    assert result.returncode == 1
    assert said in result.stderr
    assert result.stdout == ''


def test_a_load_balancers_keepalived_conf():
    result = role('setup-lb.sh', '--print', MICROFLACK_IP='127.0.0.1',
                  LB_PEER='127.0.0.6', LB_VIP='127.0.0.100/24',
                  LB_PRIORITY='150')
    assert result.returncode == 0, result.stderr
    conf = result.stdout
    for line in ('state BACKUP', 'nopreempt', 'interface lo', 'version 3',
                 'priority 150', 'advert_int 0.5', 'unicast_src_ip 127.0.0.1',
                 '127.0.0.6', '127.0.0.100/24 dev lo', 'haproxy_answers',
                 'http://127.0.0.1:80/'):
        assert line in conf, line


@pytest.mark.parametrize('settings, said', [
    ({'LB_VIP': '127.0.0.100/24'}, 'LB_PEER must be'),
    ({'LB_PEER': '127.0.0.6', 'LB_VIP': '127.0.0.100'}, 'LB_VIP must be'),
    ({'LB_PEER': '127.0.0.6', 'LB_VIP': '127.0.0.100/24', 'LB_PRIORITY': '999'},
     'LB_PRIORITY must be 1 to 254'),
    ({'LB_PEER': '127.0.0.6', 'LB_VIP': '127.0.0.100/24',
      'MICROFLACK_IP': '127.0.0.99'}, 'no interface has MICROFLACK_IP'),
])
def test_a_load_balancer_refuses_bad_settings(settings, said):
    result = role('setup-lb.sh', '--print', **settings)
    assert result.returncode == 1
    assert said in result.stderr


@pytest.fixture
def host_address():
    """An address of a network namespace of the test's own (the store
    refuses a loopback one); removed afterwards."""
    namespace = 'roles' + secrets.token_hex(3)
    address = free_subnet().replace('.0/24', '.7')
    subprocess.run(['ip', 'netns', 'add', namespace], check=True)
    try:
        subprocess.run(['ip', '-n', namespace, 'addr', 'add',
                        f'{address}/24', 'dev', 'lo'], check=True)
        yield address
    finally:
        subprocess.run(['ip', 'netns', 'del', namespace], check=False)


def test_the_stores_configuration(host_address):
    result = role('setup-store.sh', '--print', MICROFLACK_IP=host_address)
    assert result.returncode == 0, result.stderr
    assert f'bind-address = 127.0.0.1,{host_address}' in result.stdout
    assert f'bind 127.0.0.1 -::1 {host_address}' in result.stdout
    refused = role('setup-store.sh', '--print', MICROFLACK_IP='127.0.0.1')
    assert refused.returncode == 1
    assert 'MICROFLACK_IP must be this host' in refused.stderr


@pytest.mark.parametrize('script', ['setup-registry.sh', 'setup-lb.sh',
                                    'setup-store.sh', 'setup-worker.sh'])
def test_role_scripts_take_no_arguments(script):
    result = role(script, '--bogus')
    assert result.returncode == 2
    assert 'usage:' in result.stderr
