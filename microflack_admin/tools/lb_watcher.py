"""The load balancer's watcher: confd's role in MicroFlack.

It reads the registry's /services tree, renders haproxy.cfg from it
(:mod:`lb_config`), and when the text changes: validates the new file with
``haproxy -c``, saves the servers' states through the stats socket (so a
server marked DOWN stays DOWN), replaces the configuration atomically and
sends SIGUSR2 to the HAProxy master, which starts a new worker with the new
configuration while the old one finishes its connections. Then it checks
what HAProxy runs (``show servers state``) against what it wrote, and sends
the reload again if a signal did not take (see :meth:`Watcher.check_running`);
then it blocks in an etcd v3 watch of /services/ from the revision after the
one it rendered, so no change is missed across a reconnect, until something
changes (or a periodic resync, which checks HAProxy again). A revision etcd
has compacted away makes it read everything again.

    lb_watcher.py --etcd URLS --config haproxy.cfg --settings settings.json
                  --master-pid-file haproxy.pid [--pid-file watcher.pid]
    lb_watcher.py --once ...    render and write the configuration, no reload

Signals: SIGTERM/SIGINT stop it; SIGHUP makes it re-read the registry and
reload HAProxy even if the configuration did not change.
"""
import argparse
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lb_config

from microflack_common.config import ConfigError, env_float
from microflack_common.etcd_client import (
    EtcdClient,
    EtcdCompacted,
    EtcdError,
    EtcdTimeout,
    parse_etcd_urls,
)

SERVICES_KEY = '/services/'
EMPTY_SERVER_STATE = '1\n'
# HAProxy serves a new configuration a fraction of a second after the
# reload signal. One that still serves another after this long (seconds)
# did not take the signal (one that reaches the master while it is still
# reloading can be lost: signals coalesce), and is sent another; the pause
# doubles while reloads keep not taking (a configuration HAProxy accepts
# but cannot start, say), up to RELOAD_GRACE_MAX.
RELOAD_GRACE = 1.0
RELOAD_GRACE_MAX = 30.0
# How often the watcher looks again while HAProxy does not serve what it
# should yet (seconds).
RECHECK_INTERVAL = 0.2
# etcd keeps counting the upstream keys' TTLs while it is down (or while
# the instances cannot reach it): after an outage longer than the TTL,
# every key expires at once while the instances still serve, and they
# register again a second or two after etcd's return. For this long
# (seconds) after an outage, servers missing from the registry stay in
# HAProxy; a dead one fails its health checks meanwhile.
REJOIN_GRACE = 5.0

logger = logging.getLogger('lb_watcher')


class Wakeup(BaseException):
    """A signal arrived while the watcher was waiting."""


class Watcher:
    def __init__(self, etcd, settings, config_path, haproxy='haproxy',
                 master_pid_file=None, watch_timeout=30.0, debounce=0.05,
                 max_backoff=5.0):
        self.etcd = etcd
        self.settings = settings
        self.config_path = Path(config_path)
        self.haproxy = haproxy
        self.master_pid_file = Path(master_pid_file) if master_pid_file \
            else None
        self.watch_timeout = watch_timeout
        self.debounce = debounce
        self.max_backoff = max_backoff
        try:
            self.current_text = self.config_path.read_text()
        except OSError:
            self.current_text = ''
        self.reloads = 0
        self._reloaded_at = float('-inf')     # when the last signal went
        self._reloads_again = 0               # signals sent again in a row
        self._rejected_text = None
        self._known_warnings = set()
        self._etcd_down = False
        self._rejoin_until = 0.0        # the grace after an outage ends
        self._applied_tree = None       # the registry as last applied
        self._backoff = 0.0
        self._stopping = False
        self._force = False
        self._waiting = False

    # -- the registry --------------------------------------------------

    def read_tree(self):
        """(the revision read at, /services as nested dicts)."""
        found = self.etcd.get_prefix(SERVICES_KEY)
        return found.revision, found.tree(SERVICES_KEY)

    def _etcd_failed(self, exc):
        if not self._etcd_down:
            logger.error('registry unavailable (%s); keeping the running '
                         'configuration and retrying', exc)
            self._etcd_down = True
        self._backoff = min(self.max_backoff, max(0.5, self._backoff * 2))
        self._wait(time.sleep, self._backoff)

    def _etcd_ok(self):
        if self._etcd_down:
            logger.info('registry available again')
            self._etcd_down = False
            self._rejoin_until = time.monotonic() + REJOIN_GRACE
        self._backoff = 0.0

    def rejoin_seconds(self):
        """Seconds left of the grace after an outage (0 outside it)."""
        return max(0.0, self._rejoin_until - time.monotonic())

    def with_missing_servers(self, tree):
        """``tree`` plus the upstreams of the registry as last applied
        that it lacks, during the grace after an outage (see
        REJOIN_GRACE); ``tree`` itself otherwise."""
        if not self.rejoin_seconds() or not self._applied_tree:
            return tree
        merged, kept = _merge_upstreams(tree, self._applied_tree)
        if kept:
            logger.info('keeping %s, missing from the registry, for %.0f s '
                        'after its outage (instances register again)',
                        _names(kept), self.rejoin_seconds())
        return merged

    # -- the configuration ---------------------------------------------

    def render(self, tree):
        rendered = lb_config.render(tree, self.settings)
        for warning in rendered.warnings:
            if warning not in self._known_warnings:
                logger.warning('registry: %s', warning)
        self._known_warnings = set(rendered.warnings)
        return rendered.text

    def validate(self, path):
        """(ok, haproxy's output) of ``haproxy -c -f path``."""
        try:
            result = subprocess.run(
                [self.haproxy, '-c', '-f', str(path)], capture_output=True,
                text=True, timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return False, str(exc)
        return result.returncode == 0, (result.stdout + result.stderr).strip()

    def write_config(self, text, save_state=True):
        """Validate ``text`` in a temporary file and put it in place.
        Returns False (the running file untouched) if HAProxy rejects it."""
        self.config_path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.config_path.parent,
                                   prefix=f'.{self.config_path.name}.')
        try:
            with os.fdopen(fd, 'w') as file:
                file.write(text)
            ok, output = self.validate(tmp)
            if not ok:
                if text != self._rejected_text:
                    logger.error('haproxy -c rejects the new '
                                 'configuration; keeping the running '
                                 'one:\n%s', output)
                self._rejected_text = text
                return False
            if save_state:
                self.save_server_state(text)
            else:
                _write_atomically(Path(self.settings.state_file),
                                  EMPTY_SERVER_STATE)
            os.replace(tmp, self.config_path)
            tmp = None
        finally:
            if tmp is not None:
                os.unlink(tmp)
        self._rejected_text = None
        self.current_text = text
        return True

    def apply(self, tree, force=False):
        """Render; if the text changed (or ``force``), put it in place and
        reload HAProxy. Returns True when HAProxy was told to reload."""
        applied = tree
        tree = self.with_missing_servers(tree)
        if tree is applied:
            self._applied_tree = tree
        text = self.render(tree)
        if text == self.current_text and not force:
            return False
        if text == self._rejected_text and not force:
            return False
        if not self.write_config(text):
            return False
        logger.info('configuration updated: %s', _summary(text))
        return self.reload_haproxy()

    # -- HAProxy -------------------------------------------------------

    def dump_server_state(self):
        """``show servers state`` from the stats socket, or None."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(2)
                sock.connect(self.settings.stats_socket)
                sock.sendall(b'show servers state\n')
                chunks = []
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
        except OSError:
            return None
        return b''.join(chunks).decode('utf-8', 'replace')

    def save_server_state(self, new_text):
        """Save the running servers' states for the next worker, keeping
        only those whose definition the new configuration leaves as is."""
        path = Path(self.settings.state_file)
        state = self.dump_server_state()
        if state is None:
            try:
                state = path.read_text()
            except OSError:
                state = EMPTY_SERVER_STATE
        state = lb_config.filter_server_state(
            state, self.current_text, new_text) or EMPTY_SERVER_STATE
        _write_atomically(path, state)

    def master_pid(self):
        if self.master_pid_file is None:
            return None
        try:
            pid = int(self.master_pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        # A stale pid file must not make us signal an unrelated process.
        try:
            cmdline = Path(f'/proc/{pid}/cmdline').read_bytes()
        except FileNotFoundError:
            return None
        except OSError:
            return pid
        return pid if b'haproxy' in cmdline else None

    def reload_haproxy(self):
        pid = self.master_pid()
        if pid is None:
            logger.warning('HAProxy master not running (pid file %s): the '
                           'new configuration applies when it starts',
                           self.master_pid_file)
            return False
        try:
            os.kill(pid, signal.SIGUSR2)
        except ProcessLookupError:
            logger.warning('HAProxy master %s is gone: the new '
                           'configuration applies when it starts', pid)
            return False
        self.reloads += 1
        self._reloaded_at = time.monotonic()
        logger.info('HAProxy master %s reloading', pid)
        return True

    def check_running(self):
        """Compare the servers HAProxy runs (its own state, through the
        stats socket) with the configuration written last, and send the
        reload again when, RELOAD_GRACE seconds after the last signal, they
        still differ. True when HAProxy serves the configuration, False
        when not yet, None when HAProxy does not answer (it reads the file
        when it starts)."""
        state = self.dump_server_state()
        if state is None:
            return None
        stale = lb_config.stale_servers(self.current_text, state)
        if not stale:
            if self._reloads_again:
                logger.info('HAProxy serves the configuration now (%s), '
                            'after %d more reload(s)',
                            _summary(self.current_text), self._reloads_again)
                self._reloads_again = 0
            return True
        waited = time.monotonic() - self._reloaded_at
        grace = min(RELOAD_GRACE * 2 ** self._reloads_again, RELOAD_GRACE_MAX)
        if waited >= grace:
            logger.warning(
                'HAProxy does not serve the configuration %s after the '
                'last reload (servers differing: %s): reloading again',
                'since the watcher started' if waited == float('inf')
                else f'{waited:.1f} s', _names(stale))
            if self.reload_haproxy():
                self._reloads_again += 1
        return False

    # -- the loop ------------------------------------------------------

    def _on_signal(self, signum, frame):
        if signum == signal.SIGHUP:
            self._force = True
        else:
            self._stopping = True
        if self._waiting:
            raise Wakeup()

    def install_signal_handlers(self):
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self._on_signal)

    def stop(self):
        self._stopping = True

    def _wait(self, function, *args):
        """Call a blocking function that a signal may cut short."""
        self._waiting = True
        try:
            if self._stopping or self._force:
                raise Wakeup()
            return function(*args)
        finally:
            self._waiting = False

    def wait_for_change(self, revision, timeout=None):
        """Block until /services changes after ``revision``, a resync is
        due (after ``timeout`` seconds, the watch timeout by default), or
        a signal arrives."""
        try:
            self._wait(self.etcd.watch_prefix, SERVICES_KEY, revision + 1,
                       timeout or self.watch_timeout)
        except EtcdTimeout:
            return
        except EtcdCompacted:
            logger.info('revision %s compacted away; reading everything '
                        'again', revision + 1)
            return
        except EtcdError as exc:
            self._etcd_failed(exc)
            return
        # Let a burst of changes settle, so that it makes one reload.
        self._wait(time.sleep, self.debounce)

    def run_once(self):
        """Read, render, apply (or back off if etcd is unreachable); then
        return the revision it rendered, or None."""
        try:
            revision, tree = self.read_tree()
        except EtcdError as exc:
            self._etcd_failed(exc)
            return None
        self._etcd_ok()
        force, self._force = self._force, False
        self.apply(tree, force=force)
        return revision

    def run(self):
        logger.info('watching %s on %s', SERVICES_KEY,
                    ', '.join(self.etcd.urls))
        while not self._stopping:
            try:
                revision = self.run_once()
                if revision is not None:
                    # Until HAProxy serves what the registry says, look
                    # again soon (a reload may not have taken).
                    serving = self.check_running()
                    timeout = RECHECK_INTERVAL if serving is False \
                        else self.watch_timeout
                    # Read everything again when an outage's grace ends.
                    if self.rejoin_seconds():
                        timeout = min(timeout, self.rejoin_seconds() + 0.05)
                    self.wait_for_change(revision, timeout)
            except Wakeup:
                pass
        logger.info('stopped')

    def render_initial(self):
        """Write a configuration for HAProxy to start with (an empty one if
        the registry cannot be read). Returns an exit status."""
        try:
            _, tree = self.read_tree()
        except EtcdError as exc:
            logger.warning('etcd unreachable (%s): starting with no '
                           'services', exc)
            tree = {}
        if not self.write_config(self.render(tree), save_state=False):
            return 1
        logger.info('configuration written to %s', self.config_path)
        return 0


def _summary(text):
    backends = sum(1 for line in text.splitlines()
                   if line.startswith('backend '))
    servers = sum(1 for line in text.splitlines()
                  if line.lstrip().startswith('server '))
    return f'{backends} backend(s), {servers} server(s)'


def _merge_upstreams(tree, previous):
    """(``tree`` with the upstreams of ``previous`` it lacks, those added
    as (backend, server) pairs). A service gone altogether comes back with
    its location and backend options too."""
    merged, kept = dict(tree), []
    for name, entry in previous.items():
        old_upstream = entry.get('upstream') if isinstance(entry, dict) \
            else None
        if not isinstance(old_upstream, dict):
            continue
        current = merged.get(name)
        if not isinstance(current, dict):
            current = {key: value for key, value in entry.items()
                       if key != 'upstream'}
        upstream = current.get('upstream')
        upstream = dict(upstream) if isinstance(upstream, dict) else {}
        for instance, address in old_upstream.items():
            if instance not in upstream:
                upstream[instance] = address
                kept.append((f'{name}_backend', instance))
        merged[name] = {**current, 'upstream': upstream}
    return merged, sorted(kept)


def _names(servers, most=5):
    """backend/server, ... of some (backend, server) pairs."""
    names = [f'{backend}/{server}' for backend, server in servers]
    more = f' and {len(names) - most} more' if len(names) > most else ''
    return ', '.join(names[:most]) + more


def _write_atomically(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.')
    try:
        with os.fdopen(fd, 'w') as file:
            file.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def load_settings(args):
    """Settings from the JSON file, then the command line; the stats
    password from the file or the STATS_PASSWORD environment variable."""
    values = {}
    if args.settings:
        with open(args.settings) as file:
            values = json.load(file)
        if not isinstance(values, dict):
            raise ValueError(f'{args.settings}: expected a JSON object')
    for name in ('bind', 'port', 'stats_user', 'stats_socket', 'state_file'):
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    if 'stats_password' not in values and os.environ.get('STATS_PASSWORD'):
        values['stats_password'] = os.environ['STATS_PASSWORD']
    required = ('stats_user', 'stats_password', 'stats_socket', 'state_file')
    fields = ('bind', 'port', 'threads', 'client_maxconn',
              *(limit[0] for limit in lb_config.RATE_LIMITS),
              'https_port', 'tls_cert', 'https_redirect', 'internal_sources',
              *required)
    unknown = set(values) - set(fields)
    if unknown:
        raise ValueError(f'unknown settings: {", ".join(sorted(unknown))}')
    missing = [name for name in required if not values.get(name)]
    if missing:
        raise ValueError(f'missing settings: {", ".join(missing)}')
    return lb_config.Settings(**values)


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description='Render HAProxy configuration from the etcd /services '
                    'tree and reload HAProxy on every change.')
    parser.add_argument('--etcd', default=os.environ.get('ETCD'),
                        help='etcd client URL(s), comma-separated '
                             '(default: $ETCD)')
    parser.add_argument('--config', required=True,
                        help='path of the haproxy.cfg to write')
    parser.add_argument('--haproxy', default='haproxy',
                        help='HAProxy binary (for haproxy -c)')
    parser.add_argument('--master-pid-file',
                        help='pid file of the HAProxy master (haproxy -p)')
    parser.add_argument('--pid-file', help="this process's pid file")
    parser.add_argument('--settings', help='JSON file: bind, port, threads, '
                        'stats_user, stats_password, stats_socket, state_file')
    parser.add_argument('--bind', help='address HAProxy listens on')
    parser.add_argument('--port', type=int, help='port HAProxy listens on')
    parser.add_argument('--stats-user')
    parser.add_argument('--stats-socket', help='HAProxy admin socket path')
    parser.add_argument('--state-file', help='server state file path')
    parser.add_argument('--watch-timeout', type=float, default=30.0,
                        help='seconds between full re-reads (default 30)')
    parser.add_argument('--debounce', type=float, default=0.05,
                        help='seconds to let a burst of changes settle')
    parser.add_argument('--max-backoff', type=float, default=5.0,
                        help='longest pause between attempts to reach etcd')
    parser.add_argument('--once', action='store_true',
                        help='write the configuration once and exit')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr,
        format='%(asctime)s lb_watcher[%(process)d] %(levelname)s: '
               '%(message)s')
    try:
        settings = load_settings(args)
        # Each call's time limit, the services' setting (a cluster's
        # clients take less than the default, to pass a dead member by).
        etcd = EtcdClient(parse_etcd_urls(args.etcd, '--etcd/ETCD'),
                          timeout=env_float('ETCD_TIMEOUT', 2.0))
    except (ValueError, OSError, TypeError, ConfigError) as exc:
        logger.error('%s', exc)
        return 2
    watcher = Watcher(etcd, settings, args.config, haproxy=args.haproxy,
                      master_pid_file=args.master_pid_file,
                      watch_timeout=args.watch_timeout,
                      debounce=args.debounce, max_backoff=args.max_backoff)
    if args.once:
        return watcher.render_initial()
    watcher.install_signal_handlers()
    pid_file = Path(args.pid_file) if args.pid_file else None
    if pid_file:
        _write_atomically(pid_file, f'{os.getpid()}\n')
    try:
        watcher.run()
    finally:
        if pid_file:
            try:
                if pid_file.read_text().strip() == str(os.getpid()):
                    pid_file.unlink()
            except OSError:
                pass
    return 0


if __name__ == '__main__':
    sys.exit(main())
