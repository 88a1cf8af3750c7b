"""The upgrade benchmark (issue 17): a platform of an earlier version,
whose registry is etcd's v2 API, brought to this checkout by the
documented command (``setup-all-in-one.sh`` run again from the new
checkout) under steady GET+POST load, as ``mfbench`` measures a roll.

It installs the earlier version (``--from``, by default the last commit
whose registry was v2) from this repository's history into a private
MF_HOME on free loopback ports, seeds it (a user, messages, a revoked
token), starts the load, runs this checkout's setup on the same MF_HOME,
stops the load, and reports: requests, failed, posted, lost; whether the
users, messages, secrets and the revocation survived; whether etcd serves
v3 only afterwards and every instance is registered on a lease.

    mfbench-upgrade [--from REF] [--clients N] [--json FILE]
"""
import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from private_platform import (
    ROOT,
    MixedLoad,
    PrivatePlatform,
    ScriptFailed,
    host_database_settings,
    mariadb_admin,
)

PROG = 'mfbench-upgrade'
# The last commit whose services register in etcd's v2 API.
PREVIOUS_VERSION = 'eb70dd3db24e7db09be5e9188350e558acec4c48'
SERVICES = ['ui', 'users', 'tokens', 'messages', 'socketio']


def unpack(ref, into):
    """This repository's tree at ``ref``, unpacked into ``into``."""
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(['git', '-C', str(ROOT), 'archive', ref],
                             capture_output=True, check=True)
    subprocess.run(['tar', '-x', '-C', str(into)], input=archive.stdout,
                   check=True)
    return into


def private_wheelhouse(home):
    """A copy (hard links) of the wheelhouse the platform would use: the
    earlier version's build writes its own microflack_common wheel, which
    must not replace the one other platforms install from."""
    source = os.environ.get('WHEELHOUSE') or os.environ.get(
        'MF_TEST_WHEELHOUSE')
    target = home / 'wheelhouse'
    if source and Path(source).is_dir():
        shutil.copytree(source, target, copy_function=os.link)
    return {'WHEELHOUSE': str(target)}


def secrets_digest(home):
    digest = hashlib.sha256()
    for path in sorted((home / 'secrets').iterdir()):
        digest.update(path.name.encode() + b'\0' + path.read_bytes())
    return digest.hexdigest()


def upgrade_under_load(platform, old_root, clients=8, progress=print):
    """Install the version in ``old_root`` as ``platform``, upgrade it to
    this checkout under load; the figures."""
    old_setup = old_root / 'microflack_admin' / 'install' / \
        'setup-all-in-one.sh'
    progress(f'{PROG}: installing the earlier version in {platform.home} '
             f'...')
    platform.run(str(old_setup), timeout=1200)
    before = {service: sorted(platform.instance_records(service))
              for service in SERVICES}
    token = platform.user_with_token('upgrader')
    revoked = platform.user_with_token('leaver')
    auth = {'Authorization': f'Bearer {token}'}
    for n in range(5):
        rv = platform.http.post(f'{platform.lb}/api/messages', headers=auth,
                                json={'source': f'before the upgrade {n}'},
                                timeout=10)
        assert rv.status_code == 201, rv.text
    rv = platform.http.delete(f'{platform.lb}/api/tokens', timeout=10,
                              headers={'Authorization': f'Bearer {revoked}'})
    assert rv.status_code == 204, rv.text
    prefix = platform.env['MF_DB_PREFIX']
    users = platform.table_ids(f'{prefix}users', 'users')
    messages = platform.table_ids(f'{prefix}messages', 'messages')
    secrets = secrets_digest(platform.home)

    load = MixedLoad(
        lambda http: http.get(f'{platform.lb}/api/messages', headers=auth,
                              timeout=15),
        lambda http: http.post(f'{platform.lb}/api/messages', headers=auth,
                               json={'source': 'during the upgrade'},
                               timeout=15),
        clients=clients)
    progress(f'{PROG}: upgrading to this checkout under load '
             f'({clients} clients) ...')
    with load:
        time.sleep(1)
        started = time.monotonic()
        result = platform.run('install/setup-all-in-one.sh', check=False,
                              timeout=1200)
        seconds = time.monotonic() - started
        time.sleep(1)
    stored = platform.table_ids(f'{prefix}messages', 'messages')
    after = {service: sorted(platform.instance_records(service))
             for service in SERVICES}
    etcd_command = Path('/proc', (platform.home / 'run' / 'etcd.pid')
                        .read_text().strip(), 'cmdline').read_bytes()
    v2 = platform.http.get(f'{platform.etcd}/v2/keys/', timeout=5)
    keys = platform.etcd_client.get_prefix('/services/').kvs
    upstreams = [kv for kv in keys if '/upstream/' in kv.key]
    still_refused = platform.http.get(
        f'{platform.lb}/api/tokens', timeout=10,
        headers={'Authorization': f'Bearer {revoked}'}).status_code == 401
    return {
        'upgrade_ok': result.returncode == 0,
        'upgrade_output': (result.stdout + result.stderr)[-3000:],
        'upgrade_s': round(seconds, 1),
        'requests': load.requests,
        'failed': len(load.failures),
        'failures': load.failures[:10],
        'posted': len(load.created),
        'lost': len(set(load.created) - stored),
        'users_kept': users <= platform.table_ids(f'{prefix}users', 'users'),
        'messages_kept': messages <= stored,
        'secrets_kept': secrets_digest(platform.home) == secrets,
        'revoked_token_refused': still_refused,
        'every_instance_replaced': all(
            not set(before[s]) & set(after[s]) and after[s]
            for s in SERVICES),
        'etcd_without_v2': b'--enable-v2' not in etcd_command
        and v2.status_code == 404,
        'instances_on_leases': bool(upstreams) and all(
            kv.lease for kv in upstreams),
        'registered_as_recorded': sorted(
            kv.key.rsplit('/', 1)[-1] for kv in upstreams) == sorted(
            name for names in after.values() for name in names),
    }


def report(figures):
    rows = [
        ('upgrade (setup-all-in-one.sh)', f"{figures['upgrade_s']} s",
         'ok' if figures['upgrade_ok'] else 'FAILED'),
        ('requests under load', figures['requests'], ''),
        ('failed requests', figures['failed'], 'target 0'),
        ('messages posted / lost', f"{figures['posted']} / "
         f"{figures['lost']}", 'target 0 lost'),
    ]
    checks = ['users_kept', 'messages_kept', 'secrets_kept',
              'revoked_token_refused', 'every_instance_replaced',
              'etcd_without_v2', 'instances_on_leases',
              'registered_as_recorded']
    lines = [f'  {name:<32} {value!s:>12}  {note}' for name, value, note
             in rows]
    lines += [f"  {name.replace('_', ' '):<32} "
              f"{'yes' if figures[name] else 'NO':>12}" for name in checks]
    return '\n'.join(lines)


def met(figures):
    return figures['upgrade_ok'] and figures['failed'] == 0 and \
        figures['lost'] == 0 and all(
            figures[name] for name in (
                'users_kept', 'messages_kept', 'secrets_kept',
                'revoked_token_refused', 'every_instance_replaced',
                'etcd_without_v2', 'instances_on_leases',
                'registered_as_recorded'))


def parse_args(argv):
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split(
        '\n\n')[0])
    parser.add_argument('--from', dest='ref', default=PREVIOUS_VERSION,
                        help='the earlier version (a commit of this '
                             'repository; default: the last with the v2 '
                             'registry)')
    parser.add_argument('--clients', type=int, default=8,
                        help='load clients (default 8)')
    parser.add_argument('--json', type=Path, help='write the figures here')
    args = parser.parse_args(argv)
    if not 1 <= args.clients <= 64:
        parser.error('--clients must be between 1 and 64')
    return args


def main(argv=None):
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix='mfbench-upgrade-'))
    home = work / 'home'
    home.mkdir()
    platform = None
    try:
        old_root = unpack(args.ref, work / 'previous')
        platform = PrivatePlatform.on_free_ports(
            home, 'mfbenchup_', 'mfbenchup',
            {**host_database_settings(), **private_wheelhouse(work)})
        figures = upgrade_under_load(platform, old_root, args.clients)
    except (ScriptFailed, subprocess.CalledProcessError, OSError,
            AssertionError) as exc:
        detail = getattr(exc, 'stderr', '') or ''
        print(f'{PROG}: error: {exc}\n{detail}', file=sys.stderr)
        return 1
    finally:
        if platform is not None:
            platform.remove()
            subprocess.run(mariadb_admin(
                '-e', 'DROP DATABASE IF EXISTS mfbenchup_users; '
                'DROP DATABASE IF EXISTS mfbenchup_messages',
                admin_cnf=platform.env.get('DB_ADMIN_CNF'),
                host=platform.env.get('DB_HOST'),
                port=platform.env.get('DB_PORT')), check=False)
        shutil.rmtree(work, ignore_errors=True)
    print(f'\n{PROG}: from {args.ref[:12]} to this checkout')
    print(report(figures))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1) + '\n')
    return 0 if met(figures) else 1


if __name__ == '__main__':
    sys.exit(main())
