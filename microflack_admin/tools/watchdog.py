"""The platform's watchdog: a service instance that is alive but hung is
replaced.

A dead instance is started again by the platform's supervisor (native) or
by Docker's restart policy (containers), and HAProxy takes a hung one out
of the rotation after two failed health checks; but a hung one (stopped,
deadlocked, every worker stuck) is alive, so nothing would replace it.
Every round (``--interval``) the watchdog reads the instance records of
its MF_HOME (``run/instances/<id>.info``, written by mfrun), asks each
instance ``GET /health`` as HAProxy's check does (each probe in a thread
of its own: a hung probe never delays the round), and when an instance
has failed every probe for ``--timeout`` seconds while its process lives,
kills it with SIGKILL: a native instance's whole process group (the
gunicorn master, its workers and its log pipe), which the supervisor then
starts again; a container's main process, which Docker's restart policy
then starts again (a ``docker kill`` would count as an operator's stop).

Never killed: an instance being stopped (mfkill marks its record
STOPPING=1 before the stop), a program the supervisor does not run, and an
instance still starting: one that has not answered yet since its process
started is given ``--start-grace`` seconds before its failures count.

    watchdog.py --home MF_HOME [--timeout 30] [--interval 1]
                [--start-grace 60] [--probe-timeout 2]

It logs one line for each kill to standard error (the load balancer's
log, through the supervisor). SIGTERM/SIGINT stop it.
"""
import argparse
import http.client
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import xmlrpc.client
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger('watchdog')


# -- the decision ------------------------------------------------------------

@dataclass
class _Seen:
    pid: int
    since: float                    # when this process was first seen
    answered: bool = False          # it answered a probe once
    failing_since: float | None = None


class Judge:
    """Which instances have been unhealthy long enough to be killed.

    An instance is known by its name and its current pid: a new pid (the
    supervisor started it again) starts afresh. Failures count from the
    first failed probe after its last good one; before its process first
    answers, only once ``start_grace`` seconds have passed since it was
    first seen (a starting instance runs its migrations first)."""

    def __init__(self, timeout, start_grace):
        self.timeout = timeout
        self.start_grace = start_grace
        self._seen = {}

    def observe(self, name, pid, healthy, now):
        """Record a probe's outcome; returns the seconds the instance has
        been unhealthy if it is due to be killed, else None."""
        seen = self._seen.get(name)
        if seen is None or seen.pid != pid:
            seen = self._seen[name] = _Seen(pid, now)
        if healthy:
            seen.answered = True
            seen.failing_since = None
            return None
        if seen.failing_since is None:
            if not seen.answered and now - seen.since < self.start_grace:
                return None
            seen.failing_since = now
        unhealthy = now - seen.failing_since
        return unhealthy if unhealthy >= self.timeout else None

    def forget(self, name):
        self._seen.pop(name, None)

    def keep_only(self, names):
        for name in set(self._seen) - set(names):
            del self._seen[name]


# -- what runs -----------------------------------------------------------------

def read_record(path):
    """An instance record (NAME=value lines) as a dict; None if gone."""
    try:
        text = path.read_text()
    except OSError:
        return None
    fields = {}
    for line in text.splitlines():
        name, sep, value = line.partition('=')
        if sep:
            fields[name] = value
    return fields


def watched_instances(instances_dir):
    """{instance: record} of the instances the watchdog looks after: those
    with a port, supervised (native) or in a container, not stopping."""
    found = {}
    for path in sorted(Path(instances_dir).glob('*.info')):
        record = read_record(path)
        if record is None or not record.get('PORT', '').isdigit():
            continue
        if record.get('STOPPING'):
            continue
        if record.get('RUNTIME') == 'docker' or record.get('SUPERVISED'):
            found[path.stem] = record
    return found


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__('localhost', timeout=timeout)
        self._path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


class _UnixTransport(xmlrpc.client.Transport):
    def __init__(self, path, timeout):
        super().__init__()
        self._path, self._timeout = path, timeout

    def make_connection(self, host):
        return _UnixHTTPConnection(self._path, self._timeout)


def supervised_pids(socket_path, timeout=5.0):
    """{program: pid} of the programs the supervisor runs (its XML-RPC
    interface on its unix socket; supervisorctl would cost a Python start
    per call)."""
    proxy = xmlrpc.client.ServerProxy(
        'http://localhost', transport=_UnixTransport(socket_path, timeout))
    return {info['name']: info['pid']
            for info in proxy.supervisor.getAllProcessInfo()
            if info['statename'] == 'RUNNING' and info['pid'] > 0}


def container_pid(name, timeout=5.0):
    """The host pid of a running container's main process, or None."""
    try:
        out = subprocess.run(
            ['docker', 'container', 'inspect', '--format',
             '{{.State.Running}} {{.State.Pid}}', name],
            capture_output=True, text=True, timeout=timeout).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return None
    if len(out) == 2 and out[0] == 'true' and out[1].isdigit() \
            and int(out[1]) > 0:
        return int(out[1])
    return None


def instance_address(record):
    """The ``host:port`` an instance registered (its record's ADDRESS;
    records written before mfrun kept it were all on 127.0.0.1)."""
    return record.get('ADDRESS') or f"127.0.0.1:{record['PORT']}"


def probe(address, timeout):
    """True if the instance at ``host:port`` answers GET /health with 200
    in time."""
    host, _, port = address.rpartition(':')
    connection = http.client.HTTPConnection(host.strip('[]'), int(port),
                                            timeout=timeout)
    try:
        connection.request('GET', '/health')
        return connection.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def alive(pid):
    """The process exists and is not a zombie."""
    try:
        stat = Path(f'/proc/{pid}/stat').read_text()
    except OSError:
        return False
    return stat.rpartition(')')[2].split()[0] != 'Z'


# -- the loop ------------------------------------------------------------------

class Watchdog:
    def __init__(self, home, timeout=30.0, interval=1.0, start_grace=60.0,
                 probe_timeout=2.0):
        self.home = Path(home)
        self.instances_dir = self.home / 'run' / 'instances'
        self.supervisor_socket = self.home / 'run' / 'supervisor.sock'
        self.interval = interval
        self.probe_timeout = probe_timeout
        self.judge = Judge(timeout, start_grace)
        self._probes = {}          # instance: (pid, started, future)
        self._killed = {}          # instance: the pid it was killed as
        self._supervisor_failing = False
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=32,
                                        thread_name_prefix='probe')

    def stop(self):
        self._stop.set()

    def current_pids(self, instances):
        """{instance: pid} of the watched instances whose process runs."""
        pids = {}
        native = [name for name, record in instances.items()
                  if record.get('RUNTIME') != 'docker']
        if native:
            try:
                running = supervised_pids(str(self.supervisor_socket))
                if self._supervisor_failing:
                    logger.info('the supervisor answers again')
                self._supervisor_failing = False
            except (OSError, xmlrpc.client.Error) as exc:
                if not self._supervisor_failing:
                    logger.warning('cannot ask the supervisor (%s): native '
                                   'instances are not watched meanwhile', exc)
                self._supervisor_failing = True
                running = {}
            pids.update((name, running[name]) for name in native
                        if name in running)
        for name, record in instances.items():
            if record.get('RUNTIME') == 'docker':
                pid = container_pid(name)
                if pid:
                    pids[name] = pid
        return pids

    def round(self):
        """One round: start the probes, take the results of those that
        ended, kill what is due."""
        instances = watched_instances(self.instances_dir)
        pids = self.current_pids(instances)
        # A killed one is watched again once it runs as a new process.
        self._killed = {name: pid for name, pid in self._killed.items()
                        if pids.get(name) == pid}
        for name in list(self._probes):
            if name not in pids or self._probes[name][0] != pids[name]:
                del self._probes[name]
        self.judge.keep_only(name for name in pids
                             if name not in self._killed)
        for name, pid in pids.items():
            if name not in self._probes and name not in self._killed:
                address = instance_address(instances[name])
                self._probes[name] = (pid, time.monotonic(), self._pool.submit(
                    probe, address, self.probe_timeout))
        self._stop.wait(self.interval)
        now = time.monotonic()
        for name, (pid, started, future) in list(self._probes.items()):
            if future.done():
                del self._probes[name]
                healthy = future.exception() is None and future.result()
            elif now - started > self.probe_timeout:
                healthy = False         # still waiting: as good as failed
            else:
                continue
            unhealthy = self.judge.observe(name, pid, healthy, now)
            if unhealthy is not None:
                self.kill(name, pid, instances[name], unhealthy)

    def kill(self, name, pid, record, unhealthy):
        # Looked at again just before: mfkill may be stopping it now.
        again = read_record(self.instances_dir / f'{name}.info')
        if again is None or again.get('STOPPING') or not alive(pid):
            return
        docker = record.get('RUNTIME') == 'docker'
        try:
            if docker:
                os.kill(pid, signal.SIGKILL)
            elif os.getpgid(pid) == pid:
                # The supervisor makes each run a process group of its own.
                os.killpg(pid, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        except PermissionError as exc:
            logger.error('cannot kill %s (pid %s), unhealthy for %.1f s: %s',
                         name, pid, unhealthy, exc)
            return
        self._killed[name] = pid
        self.judge.forget(name)
        logger.warning(
            'killed %s (pid %s%s): it failed every health check for %.1f s; '
            '%s starts it again', name, pid,
            ', the main process of its container' if docker
            else ' and its process group', unhealthy,
            "Docker's restart policy" if docker else 'the supervisor')

    def run(self):
        logger.info('watching the instances in %s (killed after %s s '
                    'unhealthy, probed every %s s)', self.instances_dir,
                    self.judge.timeout, self.interval)
        try:
            while not self._stop.is_set():
                self.round()
        finally:
            self._pool.shutdown(wait=False, cancel_futures=True)
        logger.info('stopped')


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog='watchdog.py',
        description='Kill (so that the supervisor starts again) a service '
                    'instance that stays alive but unhealthy.')
    parser.add_argument('--home', required=True, type=Path,
                        help='MF_HOME of the platform')
    parser.add_argument('--timeout', type=float, default=30.0,
                        help='seconds of failed health checks before a kill '
                             '(default 30)')
    parser.add_argument('--interval', type=float, default=1.0,
                        help='seconds between probes (default 1)')
    parser.add_argument('--start-grace', type=float, default=60.0,
                        help='seconds a starting instance may take to answer '
                             '(default 60)')
    parser.add_argument('--probe-timeout', type=float, default=2.0,
                        help='seconds a probe waits for an answer (default 2)')
    args = parser.parse_args(argv)
    for name in ('timeout', 'interval', 'probe_timeout'):
        if not 0 < getattr(args, name) <= 86400:
            parser.error(f"--{name.replace('_', '-')} must be a number of "
                         f"seconds above 0")
    if not 0 <= args.start_grace <= 86400:
        parser.error('--start-grace must be a number of seconds, 0 or more')
    if not args.home.is_dir():
        parser.error(f'--home: no such folder: {args.home}')
    return args


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr,
        format='%(asctime)s watchdog[%(process)d] %(levelname)s: '
               '%(message)s')
    watchdog = Watchdog(args.home, timeout=args.timeout,
                        interval=args.interval, start_grace=args.start_grace,
                        probe_timeout=args.probe_timeout)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: watchdog.stop())
    watchdog.run()
    return 0


if __name__ == '__main__':
    sys.exit(main())
