"""The Kubernetes files (install/kubernetes), offline: no cluster needed.

- every manifest validates against the Kubernetes schemas
  (kubernetes-validate --strict; a WARN, such as an apiVersion it has no
  schema for, counts as a failure);
- the properties that matter: current apiVersions, probes and resources on
  every container, the restricted pod security settings, the services'
  environment (SPEC section 2), the etcd cluster, MariaDB's volume and
  init script, the load balancer's routing, stickiness and compression,
  no Secret in the repository;
- deploy.sh and delete.sh driven against a fake kubectl that records its
  arguments and standard input and remembers the Secrets created.
"""
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import lb_config
import pytest
import yaml

ADMIN = Path(__file__).resolve().parent.parent
ROOT = ADMIN.parent
K8S = ADMIN / 'install' / 'kubernetes'
MANIFESTS = K8S / 'manifests'
DEPLOY = K8S / 'deploy.sh'
DELETE = K8S / 'delete.sh'

SERVICES = ['ui', 'users', 'tokens', 'messages', 'socketio']
SERVICES_WITH_DB = ['users', 'messages']
KUBERNETES_VERSION = '1.37.0'
NAMESPACE = 'microflack'
SECRET_KEYS = {
    'microflack-app': {'secret-key', 'jwt-secret-key'},
    'microflack-db': {'root-password', 'users-password', 'messages-password',
                      'users-database-url', 'messages-database-url'},
}
# The API group/version each kind must use: the current, stable ones.
API_VERSIONS = {
    'Namespace': 'v1',
    'Service': 'v1',
    'ConfigMap': 'v1',
    'Secret': 'v1',
    'Deployment': 'apps/v1',
    'StatefulSet': 'apps/v1',
    'PodDisruptionBudget': 'policy/v1',
    'NetworkPolicy': 'networking.k8s.io/v1',
    'Ingress': 'networking.k8s.io/v1',
}
WORKLOAD_KINDS = ('Deployment', 'StatefulSet')


def version_of(service):
    return (ROOT / f'microflack_{service}' / 'VERSION').read_text().strip()


def manifest_files():
    return sorted(MANIFESTS.glob('*.yaml'))


def load_documents(text):
    return [doc for doc in yaml.safe_load_all(text) if doc]


def committed_documents():
    return [doc for path in manifest_files()
            for doc in load_documents(path.read_text())]


def find(documents, kind, name):
    matches = [doc for doc in documents
               if doc['kind'] == kind and doc['metadata']['name'] == name]
    assert len(matches) == 1, f'expected one {kind} {name}, got {len(matches)}'
    return matches[0]


def containers(workload):
    spec = workload['spec']['template']['spec']
    return spec.get('initContainers', []) + spec['containers']


def env_of(container):
    return {item['name']: item for item in container.get('env', [])}


def validate(paths):
    """kubernetes-validate --strict on ``paths``: the list of problems
    (empty when every resource passed without a warning)."""
    result = subprocess.run(
        [sys.executable, '-m', 'kubernetes_validate', '--strict',
         '-k', KUBERNETES_VERSION, *map(str, paths)],
        capture_output=True, text=True, timeout=60)
    output = (result.stdout + result.stderr).splitlines()
    problems = [line for line in output
                if not re.match(r'INFO .* passed for resource ', line)]
    if result.returncode != 0:
        problems.append(f'exit code {result.returncode}')
    expected = sum(len(load_documents(Path(path).read_text()))
                   for path in paths)
    passed = sum(1 for line in output if ' passed for resource ' in line)
    if passed != expected:
        problems.append(f'{passed} resources passed, expected {expected}')
    return problems


# -- the manifests as committed -----------------------------------------


def test_manifests_exist():
    names = {path.name for path in manifest_files()}
    assert {f'{service}.yaml' for service in SERVICES} <= names
    assert {'00-namespace.yaml', 'etcd.yaml', 'mariadb.yaml', 'redis.yaml',
            'lb.yaml'} <= names


def test_validator_catches_outdated_and_unknown_fields(tmp_path):
    """The check below can fail: an unknown apiVersion (only a WARN with
    exit code 0) and an unknown field are both reported."""
    old = tmp_path / 'old.yaml'
    old.write_text('apiVersion: extensions/v1beta1\nkind: Ingress\n'
                   'metadata: {name: old}\nspec: {}\n')
    assert any(line.startswith('WARN') for line in validate([old]))
    bogus = tmp_path / 'bogus.yaml'
    bogus.write_text('apiVersion: v1\nkind: Service\nmetadata: {name: x}\n'
                     'spec: {ports: [{port: 80}], colour: blue}\n')
    assert any('colour' in line for line in validate([bogus]))


def test_manifests_validate_against_kubernetes_schemas():
    assert validate(manifest_files()) == []


def test_api_versions_are_current():
    for doc in committed_documents():
        assert doc['kind'] in API_VERSIONS, f"unexpected kind {doc['kind']}"
        assert doc['apiVersion'] == API_VERSIONS[doc['kind']], \
            f"{doc['kind']} {doc['metadata']['name']}: {doc['apiVersion']}"


def test_everything_in_the_namespace():
    for doc in committed_documents():
        if doc['kind'] == 'Namespace':
            assert doc['metadata']['name'] == NAMESPACE
        else:
            assert doc['metadata'].get('namespace') == NAMESPACE, \
                f"{doc['kind']} {doc['metadata']['name']}"


def test_no_secret_is_committed():
    """Secrets come from deploy.sh; none is in the repository, in any
    form (YAML or JSON, any file of the folder)."""
    for path in K8S.rglob('*'):
        if path.suffix not in ('.yaml', '.yml', '.json'):
            continue
        text = path.read_text()
        docs = ([json.loads(text)] if path.suffix == '.json'
                else load_documents(text))
        for doc in docs:
            assert doc.get('kind') != 'Secret', f'{path} holds a Secret'
            assert doc.get('kind') != 'List' or all(
                item.get('kind') != 'Secret' for item in doc.get('items', []))


def test_every_container_has_probes_and_resources():
    workloads = [doc for doc in committed_documents()
                 if doc['kind'] in WORKLOAD_KINDS]
    assert len(workloads) >= 9      # 5 services, lb, redis, etcd, mariadb
    for workload in workloads:
        for container in containers(workload):
            where = f"{workload['metadata']['name']}/{container['name']}"
            assert 'readinessProbe' in container, where
            assert 'livenessProbe' in container, where
            resources = container.get('resources', {})
            assert {'cpu', 'memory'} <= set(resources.get('requests', {})), where
            assert 'memory' in resources.get('limits', {}), where
            assert container.get('imagePullPolicy') == 'IfNotPresent', where
            image = container['image']
            assert ':' in image and not image.endswith(':latest'), where


def test_pods_meet_the_restricted_pod_security_standard():
    namespace = find(committed_documents(), 'Namespace', NAMESPACE)
    labels = namespace['metadata']['labels']
    assert labels['pod-security.kubernetes.io/enforce'] == 'restricted'
    for workload in committed_documents():
        if workload['kind'] not in WORKLOAD_KINDS:
            continue
        pod = workload['spec']['template']['spec']
        name = workload['metadata']['name']
        assert pod['securityContext']['runAsNonRoot'] is True, name
        assert pod['securityContext']['runAsUser'] > 0, name
        assert pod['securityContext']['seccompProfile'] == \
            {'type': 'RuntimeDefault'}, name
        assert not any(pod.get(key) for key in ('hostNetwork', 'hostPID',
                                                'hostIPC')), name
        for volume in pod.get('volumes', []):
            assert 'hostPath' not in volume, name
        for container in containers(workload):
            context = container['securityContext']
            assert context['allowPrivilegeEscalation'] is False, name
            assert context['capabilities'] == {'drop': ['ALL']}, name
            assert not context.get('privileged'), name


@pytest.mark.parametrize('service', SERVICES)
def test_service_deployment(service):
    docs = committed_documents()
    deployment = find(docs, 'Deployment', service)
    pod = deployment['spec']['template']['spec']
    assert pod['securityContext']['runAsUser'] == 10001
    assert pod['securityContext']['runAsGroup'] == 10001
    assert deployment['spec']['strategy']['rollingUpdate']['maxUnavailable'] == 0
    assert deployment['spec']['replicas'] >= 2
    [container] = pod['containers']
    assert container['image'] == f'microflack_{service}:@{service.upper()}_VERSION@'
    assert container.get('command') is None and container.get('args') is None, \
        'the image runs boot.sh (socketio: one worker per pod)'
    [port] = container['ports']
    assert port == {'name': 'http', 'containerPort': 5000}
    for probe in ('startupProbe', 'readinessProbe', 'livenessProbe'):
        assert container[probe]['httpGet'] == {'path': '/health', 'port': 'http'}

    env = env_of(container)
    names = [item['name'] for item in container['env']]
    assert env['FLASK_CONFIG']['value'] == 'prod'
    assert env['SERVICE_NAME']['value'] == service
    assert env['SERVICE_VERSION']['value'] == f'@{service.upper()}_VERSION@'
    assert env['POD_IP']['valueFrom'] == \
        {'fieldRef': {'fieldPath': 'status.podIP'}}
    assert env['SERVICE_ADDRESS']['value'] == '$(POD_IP):5000'
    # $(POD_IP) is only expanded when POD_IP comes first.
    assert names.index('POD_IP') < names.index('SERVICE_ADDRESS')
    assert env['ETCD']['value'].split(',') == [
        f'http://etcd-{n}.etcd:2379' for n in range(3)]
    assert env['LB']['value'] == 'http://lb'
    assert env['REDIS']['value'] == 'redis:6379'
    assert env['REDIS_CHANNEL']['value']
    for name, key in (('SECRET_KEY', 'secret-key'),
                      ('JWT_SECRET_KEY', 'jwt-secret-key')):
        assert env[name]['valueFrom'] == {
            'secretKeyRef': {'name': 'microflack-app', 'key': key}}
    if service in SERVICES_WITH_DB:
        assert env['DATABASE_URL']['valueFrom'] == {'secretKeyRef': {
            'name': 'microflack-db', 'key': f'{service}-database-url'}}
    else:
        assert 'DATABASE_URL' not in env
    # Nothing else of the database secret reaches a service.
    for item in container['env']:
        ref = item.get('valueFrom', {}).get('secretKeyRef')
        if ref and ref['name'] == 'microflack-db':
            assert ref['key'] == f'{service}-database-url'

    # Its Service: headless, selecting these pods, port 5000.
    svc = find(docs, 'Service', service)
    assert svc['spec']['clusterIP'] == 'None'
    labels = deployment['spec']['template']['metadata']['labels']
    assert svc['spec']['selector'].items() <= labels.items()
    assert deployment['spec']['selector']['matchLabels'] == svc['spec']['selector']
    assert svc['spec']['ports'] == [
        {'name': 'http', 'port': 5000, 'targetPort': 'http'}]


def test_secret_references_match_what_deploy_creates():
    for doc in committed_documents():
        if doc['kind'] not in WORKLOAD_KINDS:
            continue
        for container in containers(doc):
            for item in container.get('env', []):
                ref = item.get('valueFrom', {}).get('secretKeyRef')
                if ref:
                    assert ref['key'] in SECRET_KEYS[ref['name']], ref


def test_etcd_is_a_three_member_cluster_of_a_supported_release():
    docs = committed_documents()
    etcd = find(docs, 'StatefulSet', 'etcd')
    assert etcd['spec']['replicas'] == 3
    assert etcd['spec']['podManagementPolicy'] == 'Parallel'
    assert etcd['spec']['serviceName'] == 'etcd'
    assert etcd['spec']['volumeClaimTemplates']
    [container] = etcd['spec']['template']['spec']['containers']
    # 3.5 or 3.6, which serve only the v3 API the services speak.
    assert re.fullmatch(r'quay\.io/coreos/etcd:v3\.[56]\.\d+',
                        container['image'])
    args = container['args']
    assert not any('enable-v2' in arg for arg in args)
    assert '--initial-cluster=' + ','.join(
        f'etcd-{n}=http://etcd-{n}.etcd:2380' for n in range(3)) in args
    assert '--advertise-client-urls=http://$(POD_NAME).etcd:2379' in args
    assert env_of(container)['POD_NAME']['valueFrom'] == \
        {'fieldRef': {'fieldPath': 'metadata.name'}}
    service = find(docs, 'Service', 'etcd')
    assert service['spec']['clusterIP'] == 'None'
    assert service['spec']['publishNotReadyAddresses'] is True
    assert {port['port'] for port in service['spec']['ports']} == {2379, 2380}
    assert find(docs, 'PodDisruptionBudget', 'etcd')['spec']['minAvailable'] == 2


def test_mariadb_keeps_its_data_in_a_volume_claim():
    docs = committed_documents()
    mariadb = find(docs, 'StatefulSet', 'mariadb')
    [claim] = mariadb['spec']['volumeClaimTemplates']
    [container] = mariadb['spec']['template']['spec']['containers']
    mounts = {mount['mountPath']: mount['name']
              for mount in container['volumeMounts']}
    assert mounts['/var/lib/mysql'] == claim['metadata']['name']
    assert mounts['/docker-entrypoint-initdb.d'] == 'init'
    env = env_of(container)
    for name, key in (('MARIADB_ROOT_PASSWORD', 'root-password'),
                      ('USERS_DB_PASSWORD', 'users-password'),
                      ('MESSAGES_DB_PASSWORD', 'messages-password')):
        assert env[name]['valueFrom'] == {
            'secretKeyRef': {'name': 'microflack-db', 'key': key}}
    # No standalone PVC: delete.sh deletes every manifest's resources, and
    # the data must survive it.
    assert not any(doc['kind'] == 'PersistentVolumeClaim' for doc in docs)


def test_mariadb_init_script_creates_both_databases(tmp_path):
    """The init script, sourced by bash as the image's entrypoint does,
    against a fake ``mariadb`` client that records its input."""
    init = find(committed_documents(), 'ConfigMap', 'mariadb-init')
    [(name, script)] = init['data'].items()
    assert name.endswith('.sh')
    (tmp_path / 'init.sh').write_text(script)
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    fake = bin_dir / 'mariadb'
    fake.write_text('#!/bin/bash\n{ echo "-- $* root=$MYSQL_PWD"; cat; } '
                    '>> "$SQL_LOG"\n')
    fake.chmod(0o755)
    env = {'PATH': f'{bin_dir}:{os.environ["PATH"]}',
           'SQL_LOG': str(tmp_path / 'sql.log'),
           'MARIADB_ROOT_PASSWORD': 'rootpw1', 'USERS_DB_PASSWORD': 'userspw2',
           'MESSAGES_DB_PASSWORD': 'messagespw3'}
    result = subprocess.run(
        ['bash', '-c', 'set -eo pipefail; . ./init.sh; echo sourced-ok'],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=10)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith('sourced-ok')
    sql = (tmp_path / 'sql.log').read_text()
    assert sql.count('-- --protocol=socket --user=root root=rootpw1') == 2
    for service, password in (('users', 'userspw2'),
                              ('messages', 'messagespw3')):
        name = f'microflack_{service}'
        assert f'CREATE DATABASE IF NOT EXISTS `{name}`' in sql
        assert f"CREATE USER IF NOT EXISTS '{name}'@'%' IDENTIFIED BY " \
            f"'{password}';" in sql
        assert f"GRANT ALL ON `{name}`.* TO '{name}'@'%';" in sql
    # A missing password stops the initialisation.
    del env['MESSAGES_DB_PASSWORD']
    result = subprocess.run(['bash', '-c', '. ./init.sh'], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=10)
    assert result.returncode != 0
    assert 'MESSAGES_DB_PASSWORD is not set' in result.stderr


def haproxy_config():
    return find(committed_documents(), 'ConfigMap', 'lb-config')['data'][
        'haproxy.cfg']


def haproxy_sections(config):
    sections, current = {}, None
    for line in config.splitlines():
        if line and not line[0].isspace() and not line.startswith('#'):
            current = line.strip()
            sections[current] = []
        elif current and line.strip() and not line.strip().startswith('#'):
            sections[current].append(line.strip())
    return sections


def test_load_balancer_routes_by_path():
    sections = haproxy_sections(haproxy_config())
    frontend = sections['frontend http']
    routes = {}
    for line in frontend:
        match = re.fullmatch(r'acl (\S+) path_beg (\S+)', line)
        if match:
            routes[match[1]] = match[2]
    used = {}
    for line in frontend:
        match = re.fullmatch(r'use_backend (\S+) if (\S+)', line)
        if match:
            used[routes[match[2]]] = match[1]
    assert used == {'/api/users': 'users', '/api/tokens': 'tokens',
                    '/api/messages': 'messages', '/socket.io': 'socketio'}
    assert 'default_backend ui' in frontend
    assert 'bind :8080' in frontend
    for service in SERVICES:
        backend = sections[f'backend {service}']
        assert any(re.fullmatch(
            rf'server-template {service} 1-\d+ '
            rf'{service}\.{NAMESPACE}\.svc\.cluster\.local:5000', line)
            for line in backend), backend
        assert 'http-check send meth GET uri /health ver HTTP/1.1 hdr Host ' \
            'microflack' in backend
        assert 'http-check expect status 200' in backend
    # Sticky Socket.IO: a cookie per pod, the source address without one.
    socketio = sections['backend socketio']
    assert 'balance source' in socketio
    assert any(line.startswith('cookie ') and ' insert ' in line
               and line.endswith(' dynamic') for line in socketio)
    assert any(line.startswith('dynamic-cookie-key ') for line in socketio)


def test_load_balancer_reuses_connections_as_the_native_one():
    """Server connections, keep-alive and retries as lb_config renders
    them for the native load balancer (whose tests say why)."""
    sections = haproxy_sections(haproxy_config())
    methods = ' '.join(lb_config.IDEMPOTENT_METHODS)
    for line in ('option http-keep-alive', 'http-reuse never',
                 'timeout http-keep-alive 10s', 'option redispatch',
                 'retry-on all-retryable-errors'):
        assert line in sections['defaults'], line
    assert f'http-request disable-l7-retry if !{{ method {methods} }}' \
        in sections['frontend http']


def test_load_balancer_compresses_as_the_native_one():
    frontend = haproxy_sections(haproxy_config())['frontend http']
    compression = [line for line in frontend
                   if line.startswith('compression ')]
    assert compression == list(lb_config.COMPRESSION)


def test_load_balancer_deployment_and_service():
    docs = committed_documents()
    lb = find(docs, 'Deployment', 'lb')
    [container] = lb['spec']['template']['spec']['containers']
    assert {'name': 'http', 'containerPort': 8080} in container['ports']
    assert lb['spec']['template']['metadata']['annotations'][
        'microflack/config-digest'] == '@LB_CONFIG_DIGEST@'
    service = find(docs, 'Service', 'lb')
    assert service['spec']['sessionAffinity'] == 'ClientIP'
    assert service['spec']['ports'] == [
        {'name': 'http', 'port': 80, 'targetPort': 'http'}]
    assert service['spec']['selector'].items() <= \
        lb['spec']['template']['metadata']['labels'].items()


def test_haproxy_accepts_the_configuration(tmp_path):
    haproxy = shutil.which('haproxy') or (
        '/usr/sbin/haproxy' if os.access('/usr/sbin/haproxy', os.X_OK) else None)
    if haproxy is None:
        pytest.fail('haproxy is not installed (setup-host.sh installs it)')
    path = tmp_path / 'haproxy.cfg'
    path.write_text(haproxy_config())
    # -dW: any warning is an error.
    result = subprocess.run([haproxy, '-c', '-dW', '-f', str(path)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr


# -- deploy.sh and delete.sh against a fake kubectl ---------------------

FAKE_KUBECTL = r'''#!{python}
"""A fake kubectl: records every call (arguments and standard input) as a
JSON line, remembers the Secrets created, answers `get secret`."""
import json, os, sys
import yaml

args = sys.argv[1:]
state = os.environ['FAKE_KUBECTL_STATE']
stdin = ''
if any(a == '-f' and b == '-' for a, b in zip(args, args[1:])):
    stdin = sys.stdin.read()
with open(os.path.join(state, 'calls.jsonl'), 'a') as log:
    log.write(json.dumps({{'args': args, 'stdin': stdin}}) + '\n')
secrets_file = os.path.join(state, 'secrets.json')
secrets = json.load(open(secrets_file)) if os.path.exists(secrets_file) else {{}}
if os.environ.get('FAKE_KUBECTL_UNREACHABLE'):
    sys.exit('The connection to the server localhost:8080 was refused')
if 'get' in args and 'secret' in args:
    name = args[args.index('secret') + 1]
    if name in secrets:
        print('secret/' + name)
    elif '--ignore-not-found' not in args:
        sys.exit(f'Error from server (NotFound): secrets "{{name}}" not found')
elif args[:1] == ['create']:
    for doc in yaml.safe_load_all(stdin):
        if doc['kind'] == 'Secret':
            name = doc['metadata']['name']
            if name in secrets:
                sys.exit(f'Error from server (AlreadyExists): {{name}}')
            secrets[name] = doc
    json.dump(secrets, open(secrets_file, 'w'))
'''


class FakeKubectl:
    def __init__(self, tmp_path):
        self.state = tmp_path / 'kubectl-state'
        self.state.mkdir()
        self.path = tmp_path / 'bin' / 'kubectl'
        self.path.parent.mkdir()
        self.path.write_text(FAKE_KUBECTL.format(python=sys.executable))
        self.path.chmod(self.path.stat().st_mode | stat.S_IXUSR)
        self.home = tmp_path / 'home'
        self.home.mkdir()

    def run(self, script, *args, **env):
        """Run ``script``; returns the CompletedProcess and the kubectl
        calls it made."""
        calls_file = self.state / 'calls.jsonl'
        calls_file.unlink(missing_ok=True)
        environ = {'PATH': os.environ['PATH'], 'HOME': str(self.home),
                   'LANG': 'C.UTF-8', 'KUBECTL': str(self.path),
                   'FAKE_KUBECTL_STATE': str(self.state), **env}
        result = subprocess.run([str(script), *args], env=environ,
                                capture_output=True, text=True, timeout=60)
        calls = ([json.loads(line) for line in
                  calls_file.read_text().splitlines()]
                 if calls_file.exists() else [])
        return result, calls

    def secrets(self):
        path = self.state / 'secrets.json'
        return json.loads(path.read_text()) if path.exists() else {}

    def add_secret(self, name):
        secrets = self.secrets()
        secrets[name] = {'kind': 'Secret', 'metadata': {'name': name}}
        (self.state / 'secrets.json').write_text(json.dumps(secrets))


@pytest.fixture
def kubectl(tmp_path):
    return FakeKubectl(tmp_path)


def creates(calls):
    return [call for call in calls if call['args'][:1] == ['create']]


def applied_manifests(calls):
    """The documents of the `apply -f -` call (the manifests)."""
    [call] = [call for call in calls
              if call['args'][:1] == ['apply'] and call['args'][-2:] == ['-f', '-']]
    return call['stdin']


def test_first_deploy_creates_the_secrets_and_applies_everything(kubectl,
                                                                 tmp_path):
    result, calls = kubectl.run(DEPLOY)
    assert result.returncode == 0, result.stderr
    verbs = [call['args'][0] if call['args'][0] != '-n' else call['args'][2]
             for call in calls]
    # The namespace, then the secrets, then the manifests.
    assert calls[0]['args'] == ['apply', '-f',
                                str(MANIFESTS / '00-namespace.yaml')]
    assert verbs == ['apply', 'get', 'create', 'get', 'create', 'apply']
    for call in calls:
        if 'get' in call['args']:
            assert call['args'][:2] == ['-n', NAMESPACE]
            assert '--ignore-not-found' in call['args']

    secrets = kubectl.secrets()
    assert set(secrets) == set(SECRET_KEYS)
    values = []
    for name, keys in SECRET_KEYS.items():
        secret = secrets[name]
        assert secret['metadata']['namespace'] == NAMESPACE
        assert secret['type'] == 'Opaque'
        assert set(secret['stringData']) == keys
        values += list(secret['stringData'].values())
    db = secrets['microflack-db']['stringData']
    passwords = [db['root-password'], db['users-password'],
                 db['messages-password'],
                 secrets['microflack-app']['stringData']['secret-key'],
                 secrets['microflack-app']['stringData']['jwt-secret-key']]
    for password in passwords:
        assert re.fullmatch(r'[A-Za-z0-9]{32,}', password)
    assert len(set(passwords)) == len(passwords)
    for service in SERVICES_WITH_DB:
        assert db[f'{service}-database-url'] == (
            f'mysql+pymysql://microflack_{service}:{db[f"{service}-password"]}'
            f'@mariadb:3306/microflack_{service}?charset=utf8mb4')
    # The secret values never appear on a command line.
    for call in calls:
        for value in values:
            assert not any(value in arg for arg in call['args'])
    # What deploy.sh sends validates too (secrets included).
    sent = tmp_path / 'sent.yaml'
    sent.write_text('\n---\n'.join(call['stdin'] for call in calls
                                   if call['stdin']))
    assert validate([sent]) == []


def test_deploy_fills_in_versions_and_applies_every_manifest(kubectl):
    result, calls = kubectl.run(DEPLOY)
    assert result.returncode == 0, result.stderr
    text = applied_manifests(calls)
    assert not re.search(r'@[A-Z_]+@', text)
    docs = load_documents(text)
    expected = {(doc['kind'], doc['metadata']['name'])
                for doc in committed_documents()}
    assert {(doc['kind'], doc['metadata']['name']) for doc in docs} == expected
    assert len(docs) == len(expected)
    for service in SERVICES:
        [container] = find(docs, 'Deployment', service)['spec']['template'][
            'spec']['containers']
        version = version_of(service)
        assert container['image'] == f'microflack_{service}:{version}'
        assert env_of(container)['SERVICE_VERSION']['value'] == version
    digest = find(docs, 'Deployment', 'lb')['spec']['template']['metadata'][
        'annotations']['microflack/config-digest']
    assert re.fullmatch(r'[0-9a-f]{16}', digest)


def test_deploy_with_a_registry_and_another_cluster_domain(kubectl):
    result, calls = kubectl.run(DEPLOY, K8S_REGISTRY='registry.example:5000/mf/',
                                K8S_CLUSTER_DOMAIN='k8s.example')
    assert result.returncode == 0, result.stderr
    docs = load_documents(applied_manifests(calls))
    for service in SERVICES:
        [container] = find(docs, 'Deployment', service)['spec']['template'][
            'spec']['containers']
        assert container['image'] == \
            f'registry.example:5000/mf/microflack_{service}:{version_of(service)}'
    # Other images are not ours to move.
    [etcd] = find(docs, 'StatefulSet', 'etcd')['spec']['template']['spec'][
        'containers']
    assert etcd['image'].startswith('quay.io/coreos/etcd:')
    config = find(docs, 'ConfigMap', 'lb-config')['data']['haproxy.cfg']
    assert 'users.microflack.svc.k8s.example:5000' in config
    assert 'cluster.local' not in config


def test_second_deploy_keeps_the_secrets(kubectl):
    first, _ = kubectl.run(DEPLOY)
    assert first.returncode == 0, first.stderr
    secrets = kubectl.secrets()
    second, calls = kubectl.run(DEPLOY)
    assert second.returncode == 0, second.stderr
    assert creates(calls) == []
    assert kubectl.secrets() == secrets
    assert applied_manifests(calls)
    assert 'microflack-app exists: kept' in second.stderr


def test_deploy_creates_only_the_missing_secret(kubectl):
    kubectl.add_secret('microflack-app')
    result, calls = kubectl.run(DEPLOY)
    assert result.returncode == 0, result.stderr
    [create] = creates(calls)
    assert load_documents(create['stdin'])[0]['metadata']['name'] == \
        'microflack-db'
    assert kubectl.secrets()['microflack-app'] == {
        'kind': 'Secret', 'metadata': {'name': 'microflack-app'}}


def test_deploy_stops_when_the_cluster_does_not_answer(kubectl):
    result, calls = kubectl.run(DEPLOY, FAKE_KUBECTL_UNREACHABLE='1')
    assert result.returncode != 0
    assert 'error:' in result.stderr
    assert creates(calls) == []
    assert not any(call['args'][-2:] == ['-f', '-'] for call in calls)
    assert kubectl.secrets() == {}


def test_deploy_wait_follows_every_rollout(kubectl):
    result, calls = kubectl.run(DEPLOY, '--wait')
    assert result.returncode == 0, result.stderr
    waited = [call['args'][4] for call in calls
              if call['args'][2:4] == ['rollout', 'status']]
    assert set(waited) == {'statefulset/etcd', 'statefulset/mariadb',
                           'deployment/redis', 'deployment/lb'} | {
        f'deployment/{service}' for service in SERVICES}


def test_delete_keeps_the_data(kubectl):
    result, calls = kubectl.run(DELETE)
    assert result.returncode == 0, result.stderr
    [call] = calls
    args = call['args']
    assert args[:2] == ['delete', '--ignore-not-found']
    files = [args[i + 1] for i, arg in enumerate(args) if arg == '-f']
    assert sorted(files) == sorted(str(path) for path in manifest_files()
                                   if path.name != '00-namespace.yaml')
    joined = ' '.join(args)
    assert 'namespace' not in joined and 'pvc' not in joined
    deleted = [doc for path in files
               for doc in load_documents(Path(path).read_text())]
    assert not any(doc['kind'] in ('PersistentVolumeClaim', 'Namespace',
                                   'Secret') for doc in deleted)
    assert '--with-data' in result.stderr


def test_delete_with_data_removes_the_namespace(kubectl):
    result, calls = kubectl.run(DELETE, '--with-data')
    assert result.returncode == 0, result.stderr
    assert [call['args'] for call in calls] == [
        ['delete', 'namespace', NAMESPACE, '--ignore-not-found']]


@pytest.mark.parametrize('script,args', [
    (DEPLOY, ['--bogus']), (DEPLOY, ['-h']), (DEPLOY, ['--wait', 'now']),
    (DELETE, ['--all']), (DELETE, ['-h']), (DELETE, ['--with-data', 'x']),
])
def test_bad_arguments_print_the_usage(kubectl, script, args):
    result, calls = kubectl.run(script, *args)
    assert result.returncode == 2
    assert result.stderr.startswith(f'usage: {script.name} ')
    assert calls == []


@pytest.mark.parametrize('script', [DEPLOY, DELETE])
def test_missing_kubectl_is_named(kubectl, script, tmp_path):
    result, calls = kubectl.run(script, KUBECTL=str(tmp_path / 'no-kubectl'))
    assert result.returncode == 1
    assert f"'{tmp_path / 'no-kubectl'}' is not installed" in result.stderr
    assert calls == []
