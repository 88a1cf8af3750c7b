"""Carries a platform's registry from etcd's v2 API over to v3 while its
instances move to the v3 build (``setup-all-in-one.sh`` runs it when it
finds instances registered the old way; see the README, "Upgrading").

Until no instance is left in the v2 registry, each pass (every
``--interval`` seconds):

- every v2 upstream key is mirrored as a v3 key on the bridge's lease, so
  the load balancer's watcher, which reads v3 only, routes the old
  instances beside the new ones;
- a mirrored key whose v2 key is gone (the instance left) is deleted, and
  one deleted in v3 (``mfkill``, ``mfupgrade`` retiring the instance) is
  not written again;
- the v2 location and backend keys are written to v3 where v3 lacks them;
- every revoked token in v2 is written to v3 (value and lease as the
  tokens service writes them), so it stays refused by the new instances.

Then it revokes its lease and exits 0 (at once if nothing is left in v2).

    registry_bridge.py --etcd URLS [--ready-file PATH] [--interval S]
                       [--timeout S]
"""
import argparse
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path

import urllib3

from microflack_common.config import ConfigError
from microflack_common.etcd_client import (
    EtcdClient,
    EtcdError,
    parse_etcd_urls,
)

logger = logging.getLogger('registry_bridge')

# The mirrored keys' lease: long enough to ride out a slow pass, short
# enough that a killed bridge's keys leave soon.
LEASE_TTL = 10
REVOKED_PREFIX = '/revoked-tokens/'


class V2Registry:
    """Reads etcd's v2 key space (only what the bridge needs)."""

    def __init__(self, urls, timeout=3.0):
        self.urls = urls
        self.timeout = timeout
        self.http = urllib3.PoolManager(retries=False)

    def tree(self, key):
        """Every key below ``key`` as {path: (value, ttl or None)}; empty
        when the directory, or the v2 API, is not there."""
        errors = []
        for url in self.urls:
            try:
                response = self.http.request(
                    'GET', f'{url}/v2/keys{key}?recursive=true',
                    timeout=self.timeout)
            except urllib3.exceptions.HTTPError as exc:
                errors.append(f'{url}: {exc}')
                continue
            if response.status == 404:
                return {}       # no such directory, or no v2 API at all
            if response.status != 200:
                errors.append(f'{url}: HTTP {response.status}')
                continue
            leaves = {}
            _walk(json.loads(response.data).get('node', {}), leaves)
            return leaves
        raise EtcdError('etcd unreachable (v2): ' + '; '.join(errors))


def _walk(node, leaves):
    if node.get('dir'):
        for child in node.get('nodes', []):
            _walk(child, leaves)
    elif 'key' in node:
        leaves[node['key']] = (node.get('value', ''), node.get('ttl'))


def is_upstream(key):
    parts = key.split('/')
    return len(parts) == 5 and parts[1] == 'services' \
        and parts[3] == 'upstream'


class Bridge:
    def __init__(self, etcd, v2):
        self.etcd = etcd
        self.v2 = v2
        self.lease = None
        self.mirrored = {}          # v3 key -> value, written by the bridge
        self.retired = set()        # mirrored keys deleted by someone else
        self.copied_tokens = set()

    def run_pass(self):
        """One pass; the number of instances still in the v2 registry."""
        services = self.v2.tree('/services')
        upstreams = {key: value for key, (value, _) in services.items()
                     if is_upstream(key)}
        for key, (value, _) in services.items():
            if not is_upstream(key) and self.etcd.get(key) is None:
                self.etcd.put(key, value)
        self._mirror(upstreams)
        self._copy_revocations()
        return len(upstreams)

    def _mirror(self, upstreams):
        if upstreams and self.lease is None:
            self.lease = self.etcd.grant(LEASE_TTL)
        elif self.lease is not None and \
                self.etcd.keep_alive(self.lease) <= 0:
            # Expired (a pass took too long): every mirrored key went.
            self.lease = self.etcd.grant(LEASE_TTL)
            self.mirrored.clear()
        for key in list(self.mirrored):
            if key not in upstreams:
                self.etcd.delete(key)
                del self.mirrored[key]
                self.retired.discard(key)
            elif self.etcd.get(key) is None:
                self.retired.add(key)       # deregistered in v3: leave it
        for key, value in upstreams.items():
            if key in self.mirrored or key in self.retired:
                continue
            current = self.etcd.get(key)
            if current is not None and current.lease != self.lease:
                continue                    # registered in v3 on its own
            self.etcd.put(key, value, lease=self.lease)
            self.mirrored[key] = value
            logger.info('routing %s (registered in v2) at %s', key, value)

    def _copy_revocations(self):
        now = time.time()
        for key, (_, ttl) in self.v2.tree(REVOKED_PREFIX.rstrip('/')).items():
            if key in self.copied_tokens or not ttl:
                continue
            if self.etcd.get(key) is None:
                self.etcd.put_expiring(key, f'{now + ttl:.0f}', int(ttl))
            self.copied_tokens.add(key)

    def finish(self):
        if self.lease is not None:
            self.etcd.revoke(self.lease)
            self.lease = None


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description='Carry the v2 registry over to v3 while the instances '
                    'registered in v2 are replaced.')
    parser.add_argument('--etcd', default=os.environ.get('ETCD'),
                        help='etcd client URL(s), comma-separated '
                             '(default: $ETCD)')
    parser.add_argument('--ready-file', type=Path,
                        help='written after the first complete pass')
    parser.add_argument('--interval', type=float, default=0.2,
                        help='seconds between passes (default 0.2)')
    parser.add_argument('--timeout', type=float, default=3600,
                        help='give up after this many seconds (default 3600)')
    args = parser.parse_args(argv)
    if not 0 < args.interval <= 60 or not 0 < args.timeout <= 86400:
        parser.error('--interval must be in (0, 60] and --timeout in '
                     '(0, 86400]')
    try:
        args.urls = parse_etcd_urls(args.etcd, '--etcd/ETCD')
    except ConfigError as exc:
        parser.error(str(exc))
    return args


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(asctime)s '
                        'registry_bridge: %(message)s')
    bridge = Bridge(EtcdClient(args.urls, timeout=3.0), V2Registry(args.urls))
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    deadline = time.monotonic() + args.timeout
    failing = False
    while not stopping:
        try:
            left = bridge.run_pass()
            failing = False
        except EtcdError as exc:
            if not failing:
                logger.warning('etcd unreachable (%s); trying again', exc)
                failing = True
            left = None
        if left is not None and args.ready_file and \
                not args.ready_file.exists():
            args.ready_file.write_text(f'{os.getpid()}\n')
        if left == 0:
            logger.info('no instance is left in the v2 registry: done')
            break
        if time.monotonic() > deadline:
            logger.error('instances still registered in v2 after %s s',
                         args.timeout)
            break
        time.sleep(args.interval)
    try:
        bridge.finish()
    except EtcdError as exc:
        logger.warning('cannot revoke the bridge lease (%s); its keys go '
                       'within %s s', exc, LEASE_TTL)
    return 0 if left == 0 else 1


if __name__ == '__main__':
    sys.exit(main())
