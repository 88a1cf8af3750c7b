"""The platform benchmark: speed, discovery, upgrades, fan-out and memory
of a MicroFlack platform on this host, against the targets of issue 7.

By default it installs a private platform with the project's own
``setup-all-in-one.sh`` (its own MF_HOME, free loopback ports, its own
databases and Redis channel) and removes it afterwards; ``--home DIR``
measures the platform already running from that MF_HOME instead.

HTTP load comes from wrk (Debian's package); every wrk measurement runs
``--runs`` times and the median is reported (these machines are noisy).
Prints a table and writes everything as JSON (``--json``).

Run it through ``microflack_admin/bin/mfbench``.
"""
import argparse
import json
import os
import platform as host_platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import lb_log
import requests

PROG = 'mfbench'
ADMIN = Path(__file__).resolve().parent.parent
# The private platform's driver, shared with the platform tests; it makes
# the project's waiting and port helpers importable (the standard library
# only, from the source tree: this virtualenv holds no microflack_common).
from private_platform import (  # noqa: E402
    PrivatePlatform,
    ScriptFailed,
    free_port,
    host_database_settings,
)

from microflack_common.polling import seconds_until  # noqa: E402

HELLO_DIR = Path(__file__).resolve().parent / 'bench_hello'
PAGE = 4096

# The original MicroFlack on this kind of machine (issue 7).
ORIGINAL = {'get_c32_rps': 182, 'get_c1_p50_ms': 5.4, 'post_c8_rps': 66,
            'hello_rps': 2194}


# -- small helpers -------------------------------------------------------

def session():
    http = requests.Session()
    http.trust_env = False
    return http


def median(values):
    return statistics.median(values) if values else None


# -- wrk -----------------------------------------------------------------

WRK_POST = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
counter = 0
request = function()
  counter = counter + 1
  return wrk.format(nil, nil, nil, '{"source": "benchmark *post* ' .. counter .. '"}')
end
"""


def wrk(url, connections, seconds, headers=(), script=None):
    """One wrk run: requests/s, p50/p99 ms, errors (non-2xx + socket)."""
    command = ['wrk', '-t', str(min(2, connections)), '-c', str(connections),
               '-d', f'{seconds}s', '--latency', '--timeout', '5s']
    for header in headers:
        command += ['-H', header]
    if script:
        command += ['-s', script]
    out = subprocess.run(command + [url], capture_output=True, text=True,
                         check=True).stdout
    return parse_wrk(out)


def parse_wrk(out):
    """wrk's report (with --latency) as requests/s, p50/p99 ms, errors."""
    def latency(label):
        found = re.search(rf'^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$', out, re.M)
        value, unit = float(found.group(1)), found.group(2)
        return value * {'us': 0.001, 'ms': 1, 's': 1000}[unit]
    errors = 0
    found = re.search(r'Non-2xx or 3xx responses: (\d+)', out)
    if found:
        errors += int(found.group(1))
    found = re.search(r'Socket errors: connect (\d+), read (\d+), write (\d+), '
                      r'timeout (\d+)', out)
    if found:
        errors += sum(int(n) for n in found.groups())
    return {'rps': float(re.search(r'Requests/sec:\s+([\d.]+)', out).group(1)),
            'p50_ms': latency(50), 'p99_ms': latency(99), 'errors': errors}


def wrk_median(runs, *args, **kwargs):
    return summary([wrk(*args, **kwargs) for _ in range(runs)])


def summary(results):
    """Medians of several wrk runs of one measurement (errors: the sum)."""
    return {'rps': median([r['rps'] for r in results]),
            'p50_ms': median([r['p50_ms'] for r in results]),
            'p99_ms': median([r['p99_ms'] for r in results]),
            'errors': sum(r['errors'] for r in results),
            'runs': results}


# -- the hello ceiling -----------------------------------------------------

class Hello:
    """The hello app under gunicorn with the platform's settings, in the
    messages release's virtualenv, registered like a service."""

    def __init__(self, platform, name):
        self.platform = platform
        self.port = free_port()
        self.name = name
        release = max((platform.home / 'releases' / 'messages').iterdir(),
                      key=lambda p: p.stat().st_mtime)
        env = {'PATH': f"{release / 'venv' / 'bin'}:/usr/bin:/bin",
               'FLASK_CONFIG': 'prod', 'ETCD': platform.etcd,
               # Registered at the platform's address, as its instances.
               'SERVICE_ADDRESS': f'{platform.address}:{self.port}',
               'INSTANCE_NAME': name, 'LANG': 'C.UTF-8'}
        for setting in ('WEB_CONCURRENCY', 'GUNICORN_THREADS',
                        'GUNICORN_WORKER_CLASS'):
            if setting in platform.env:
                env[setting] = platform.env[setting]
        self.process = subprocess.Popen(
            [release / 'venv' / 'bin' / 'gunicorn', '-c',
             'python:gunicorn_config', 'wsgi:app'],
            cwd=HELLO_DIR, env=env, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True)

    def registered(self):
        return self.name in self.platform.instances('hello')

    def stop(self, sig=signal.SIGTERM):
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def routed_to(platform, http, name):
    try:
        return http.get(f'{platform.lb}/hello', timeout=2).json().get(
            'instance') == name
    except (requests.RequestException, ValueError):
        return False


def bench_discovery(platform, out):
    """Registration to first routed request of a second hello instance;
    then kill -9 of it, to out of rotation, with the failures a steady
    client of the service saw meanwhile (the first instance stays)."""
    http = session()
    stable = Hello(platform, f'hello_stable_{uuid.uuid4().hex[:6]}')
    victim = None
    try:
        if seconds_until(lambda: routed_to(platform, http, stable.name), 30) is None:
            raise RuntimeError('the hello app was not routed')
        victim = Hello(platform, f'hello_discovery_{uuid.uuid4().hex[:6]}')
        if seconds_until(victim.registered, 30, 0.002) is None:
            raise RuntimeError('the discovery instance did not register')
        registered_at = time.monotonic()
        if seconds_until(lambda: routed_to(platform, http, victim.name), 10, 0) is None:
            raise RuntimeError('the discovery instance was never routed')
        out['routed_after_registration_s'] = time.monotonic() - registered_at
        failures, count = [], [0]
        stop = threading.Event()

        def steady():
            client = session()
            while not stop.is_set():
                try:
                    status = client.get(f'{platform.lb}/hello', timeout=5).status_code
                except requests.RequestException as exc:
                    status = type(exc).__name__
                count[0] += 1
                if status != 200:
                    failures.append(status)
                time.sleep(0.005)
        thread = threading.Thread(target=steady, daemon=True)
        thread.start()
        time.sleep(0.5)
        os.killpg(victim.process.pid, signal.SIGKILL)
        down = seconds_until(lambda: not (platform.server_status(
            'hello_backend', victim.name) or 'DOWN').startswith('UP'), 15, 0.02)
        time.sleep(0.5)
        stop.set()
        thread.join(10)
        out['killed_out_of_rotation_s'] = down
        out['killed_failed_gets'] = len(failures)
        out['killed_steady_gets'] = count[0]
    finally:
        for hello in (stable, victim):
            if hello is not None:
                hello.stop(signal.SIGKILL)
        platform.etcd_delete('/services/hello', recursive=True)


# -- the rolling upgrade under load ----------------------------------------

def bench_roll(platform, token, out, clients=8):
    old_tag = next(iter(platform.instance_records('messages').values()))['TAG']
    tag = f'{old_tag}.bench{uuid.uuid4().hex[:4]}'
    platform.run('mfbuild', '--tag', tag, 'messages')
    platform.run('mfkill', 'messages')
    for _ in range(3):
        platform.run('mfrun', 'messages', old_tag)
    failures, created, count = [], [], [0]
    lock = threading.Lock()
    stop = threading.Event()
    auth = {'Authorization': f'Bearer {token}'}

    def client(number):
        http = session()
        n = 0
        while not stop.is_set():
            n += 1
            posting = (n + number) % 3 == 0
            try:
                if posting:
                    rv = http.post(f'{platform.lb}/api/messages', headers=auth,
                                   json={'source': 'rolling'}, timeout=15)
                else:
                    rv = http.get(f'{platform.lb}/api/messages', headers=auth,
                                  timeout=15)
                status = rv.status_code
            except requests.RequestException as exc:
                # What failed, and how, for the report (the first ten).
                rv, status = None, f'{type(exc).__name__}: {exc}'[:300]
            with lock:
                count[0] += 1
                if status != (201 if posting else 200):
                    failures.append(f"{'POST' if posting else 'GET'} at "
                                    f"{time.strftime('%H:%M:%S')}: {status}")
                elif posting:
                    created.append(rv.json()['id'])
    threads = [threading.Thread(target=client, args=(n,), daemon=True)
               for n in range(clients)]
    lb_log_path = platform.home / 'logs' / 'lb.log'
    lb_log_size = lb_log.size(lb_log_path)
    for thread in threads:
        thread.start()
    time.sleep(1)
    started = time.monotonic()
    result = platform.run('mfupgrade', 'roll', 'messages', check=False)
    seconds = time.monotonic() - started
    time.sleep(1)
    stop.set()
    for thread in threads:
        thread.join(20)
    stored = set(subprocess.run(
        platform.mariadb(
            '-N', '-e',
            f"SELECT id FROM `{platform.env['MF_DB_PREFIX']}messages`.messages"),
        capture_output=True, text=True, check=True).stdout.split())
    lost = [i for i in created if str(i) not in stored]
    registered = sorted(platform.instances('messages'))
    recorded = sorted(platform.instance_records('messages'))
    out.update({'roll_ok': result.returncode == 0, 'roll_s': seconds,
                'roll_requests': count[0], 'roll_failed': len(failures),
                'roll_failures': failures[:10],
                # The load balancer logs failed requests only (and why).
                'roll_lb_errors': lb_log.failed_requests(
                    lb_log_path, lb_log_size, last=10),
                'roll_posted': len(created),
                'roll_lost': len(lost),
                'roll_leftovers': sorted(set(registered) ^ set(recorded)),
                'roll_new_tag_everywhere': all(
                    r['TAG'] == tag for r in
                    platform.instance_records('messages').values())})
    # Back to one instance of the build the platform had.
    platform.run('mfkill', 'messages')
    shutil.rmtree(platform.home / 'releases' / 'messages' / tag,
                  ignore_errors=True)
    platform.run('mfrun', 'messages')


# -- memory and stopping -------------------------------------------------------

def rss_kib(pid):
    try:
        with open(f'/proc/{pid}/statm') as file:
            return int(file.read().split()[1]) * PAGE // 1024
    except OSError:
        return None


def children(pid):
    try:
        out = subprocess.run(['pgrep', '-P', str(pid)], capture_output=True,
                             text=True).stdout
    except OSError:
        return []
    return [int(p) for p in out.split()]


def is_python(pid):
    try:
        return 'python' in os.readlink(f'/proc/{pid}/exe')
    except OSError:
        return False


def python_processes(pid):
    """[master, workers...] of an instance: its gunicorn master and the
    master's Python children (the log prefixer beside them is awk)."""
    if not pid or not is_python(pid):
        return []
    return [pid, *[child for child in children(pid) if is_python(child)]]


def memory(platform):
    """{instance: {'master_mib', 'workers_mib': [...]}} (native runtime)."""
    result = {}
    for name, record in sorted(platform.instance_records().items()):
        pids = python_processes(int(record.get('PID', 0) or 0))
        if not pids:
            continue
        master, workers = pids[0], pids[1:]
        result[name] = {
            'master_mib': (rss_kib(master) or 0) / 1024,
            'workers_mib': [(rss_kib(w) or 0) / 1024 for w in workers]}
    return result


def bench_stop_times(platform, out):
    """Seconds from SIGTERM (mfkill) to gone, for one fresh instance of
    every service."""
    times = {}
    for service in ('ui', 'users', 'tokens', 'messages', 'socketio'):
        instance = platform.run('mfrun', service).stdout.strip()
        started = time.monotonic()
        platform.run('mfkill', instance)
        times[service] = time.monotonic() - started
    out['stop_s'] = times


# -- the report ----------------------------------------------------------------

def check(ok):
    """The verdict of a row: none for a figure without a target."""
    return '' if ok is None else ('  ok' if ok else '  MISSED')


def report(r):
    lines = []

    def row(name, value, target='', ok=None):
        lines.append(f'{name:<48} {value:>22}   {target:<28}{check(ok)}'.rstrip())
    g1, g32, direct = r['get_c1'], r['get_c32'], r['get_c32_direct']
    row('(1) GET /api/messages c=32 via LB', f"{g32['rps']:.0f} req/s",
        f">= {5 * ORIGINAL['get_c32_rps']} (5x original)",
        g32['rps'] >= 5 * ORIGINAL['get_c32_rps'])
    row('    p50 / p99 ms', f"{g32['p50_ms']:.1f} / {g32['p99_ms']:.1f}")
    row('    c=1 p50', f"{g1['p50_ms']:.2f} ms", '<= 2 ms', g1['p50_ms'] <= 2)
    row('    c=1 req/s, p99', f"{g1['rps']:.0f}, {g1['p99_ms']:.1f} ms")
    lb_cost = r.get('lb_cost', 1 - g32['rps'] / direct['rps'])
    row('    direct to one instance c=32', f"{direct['rps']:.0f} req/s")
    row('    load balancer cost', f'{lb_cost * 100:.0f}%', '<= 10%',
        lb_cost <= 0.10)
    if 'tls_cost' in r:
        https = r['get_c32_https']
        row('    over HTTPS c=32 (keep-alive)', f"{https['rps']:.0f} req/s")
        row('    TLS termination cost', f"{r['tls_cost'] * 100:.0f}%",
            '<= 15%', r['tls_cost'] <= 0.15)
    row('    errors (all GET runs)', str(g1['errors'] + g32['errors']
                                         + direct['errors']), '0',
        g1['errors'] + g32['errors'] + direct['errors'] == 0)
    p8 = r['post_c8']
    row('(2) POST /api/messages c=8 via LB', f"{p8['rps']:.0f} req/s",
        f">= {5 * ORIGINAL['post_c8_rps']} (5x original)",
        p8['rps'] >= 5 * ORIGINAL['post_c8_rps'])
    hello = r['hello_c32']
    ratio = r.get('ceiling_ratio', g32['rps'] / hello['rps'])
    row('(3) hello ceiling c=32 via LB', f"{hello['rps']:.0f} req/s")
    row('    (1) / ceiling', f'{ratio * 100:.0f}%', '>= 40%', ratio >= 0.40)
    d = r['discovery']
    row('(4) registration -> first routed request',
        f"{d['routed_after_registration_s'] * 1000:.0f} ms", '<= 1 s',
        d['routed_after_registration_s'] <= 1)
    out_s = d['killed_out_of_rotation_s']
    row('    kill -9 -> out of rotation',
        'never' if out_s is None else f'{out_s:.2f} s', '<= 3 s',
        out_s is not None and out_s <= 3)
    row('    failed GETs meanwhile',
        f"{d['killed_failed_gets']} of {d['killed_steady_gets']}", '0',
        d['killed_failed_gets'] == 0)
    row('(5) roll of 3 messages instances, 8 clients',
        f"{r['roll_s']:.1f} s", '', r['roll_ok'])
    row('    failed requests', f"{r['roll_failed']} of {r['roll_requests']}",
        '0', r['roll_failed'] == 0)
    row('    lost messages', f"{r['roll_lost']} of {r['roll_posted']}", '0',
        r['roll_lost'] == 0)
    row('    left in the registry', str(len(r['roll_leftovers'])), '0',
        not r['roll_leftovers'] and r['roll_new_tag_everywhere'])
    for fan in r.get('fanout', []):
        target = 45 if fan['clients'] <= 50 else 250
        row(f"(6) fan-out to {fan['clients']} clients p50 / p99",
            f"{fan['median_p50_ms']:.0f} / {fan['median_p99_ms']:.0f} ms",
            f'p99 <= {target} ms, 0 lost',
            fan['median_p99_ms'] <= target and fan['lost'] == 0)
    for label, key in (('fresh', 'memory_fresh'), ('idle', 'memory_idle'),
                       ('after load', 'memory_loaded')):
        if key not in r:
            continue
        workers = [w for m in r[key].values() for w in m['workers_mib']]
        masters = [m['master_mib'] for m in r[key].values()]
        if label == 'idle':
            row(f'(7) RSS per worker, {label} (max)', f'{max(workers):.0f} MiB',
                '<= 60 MiB', max(workers) <= 60)
        else:
            row(f'(7) RSS per worker, {label} (max)', f'{max(workers):.0f} MiB')
        row(f'    RSS per master, {label} (max)', f'{max(masters):.0f} MiB')
    slowest = max(r['stop_s'].values())
    row('    slowest stop after SIGTERM', f'{slowest:.1f} s', '<= 5 s',
        slowest <= 5)
    return '\n'.join(lines)


# -- main --------------------------------------------------------------------------

def parse_args(argv):
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split('\n\n')[0])
    parser.add_argument('--home', type=Path,
                        help='measure the platform running from this MF_HOME '
                        '(default: install a private one, removed afterwards)')
    parser.add_argument('--runs', type=int, default=5,
                        help='wrk runs (rounds) per measurement (median; '
                        'default 5)')
    parser.add_argument('--seconds', type=int, default=5,
                        help='seconds per wrk run (default 5)')
    parser.add_argument('--json', type=Path, help='write the results here')
    parser.add_argument('--no-fanout', action='store_true',
                        help='skip the Socket.IO fan-out (6)')
    args = parser.parse_args(argv)
    if not 1 <= args.runs <= 20 or not 1 <= args.seconds <= 120:
        parser.error('--runs must be 1-20 and --seconds 1-120')
    return args


def measure(platform, args):
    r = {'host': host_platform.node(), 'cpus': os.cpu_count(),
         'time': int(time.time()), 'runs': args.runs, 'seconds': args.seconds}
    http = session()
    # Before any request (a private platform's instances have served none).
    r['memory_fresh'] = memory(platform)
    nickname = f'bench_{uuid.uuid4().hex[:8]}'
    http.post(f'{platform.lb}/api/users', json={'nickname': nickname,
                                                'password': 'pw'}, timeout=10)
    token = http.post(f'{platform.lb}/api/tokens', auth=(nickname, 'pw'),
                      timeout=10).json()['token']
    auth = f'Authorization: Bearer {token}'
    existing = len(http.get(f'{platform.lb}/api/messages', timeout=10)
                   .json()['messages'])
    for n in range(max(0, 20 - existing)):
        http.post(f'{platform.lb}/api/messages', timeout=10,
                  headers={'Authorization': f'Bearer {token}'},
                  json={'source': f'message {n} with *markdown* and a '
                        'longer text, like people write in a chat'})
    r['messages_listed'] = len(http.get(f'{platform.lb}/api/messages',
                                        timeout=10).json()['messages'])
    # Idle after serving the requests above (what the target is checked
    # on), and after the load below.
    r['memory_idle'] = memory(platform)
    messages = next(iter(platform.instance_records('messages').values()))
    direct = f"http://{platform.instance_address(messages)}/api/messages"
    url = f'{platform.lb}/api/messages'
    print(f'{PROG}: (1) GET /api/messages, direct, and (3) the hello ceiling, '
          'in rounds ...', flush=True)
    hello = Hello(platform, f'hello_ceiling_{uuid.uuid4().hex[:6]}')
    # The same GET over HTTPS (keep-alive: wrk reuses its connections), for
    # what TLS termination at the load balancer costs.
    https_url = f'{platform.lb_https}/api/messages' if platform.lb_https \
        else None
    rounds = {'get_c1': [], 'get_c32': [], 'get_c32_direct': [],
              'hello_c32': [], 'get_c32_https': []}
    try:
        if seconds_until(lambda: routed_to(platform, http, hello.name), 30) is None:
            raise RuntimeError('the hello app was not routed')
        # Each round measures everything once, back to back: this machine's
        # speed drifts between rounds, so the ratios are taken within a
        # round and their median reported.
        for _ in range(args.runs):
            rounds['get_c1'].append(wrk(url, 1, args.seconds, [auth]))
            rounds['get_c32'].append(wrk(url, 32, args.seconds, [auth]))
            if https_url:
                rounds['get_c32_https'].append(
                    wrk(https_url, 32, args.seconds, [auth]))
            rounds['get_c32_direct'].append(
                wrk(direct, 32, args.seconds, [auth]))
            rounds['hello_c32'].append(
                wrk(f'{platform.lb}/hello', 32, args.seconds))
    finally:
        hello.stop()
        platform.etcd_delete('/services/hello', recursive=True)
    for key, runs in rounds.items():
        if runs:
            r[key] = summary(runs)
    if rounds['get_c32_https']:
        r['tls_cost'] = median([
            1 - https['rps'] / plain['rps'] for https, plain
            in zip(rounds['get_c32_https'], rounds['get_c32'], strict=True)])
    r['lb_cost'] = median([
        1 - via_lb['rps'] / to_instance['rps'] for via_lb, to_instance
        in zip(rounds['get_c32'], rounds['get_c32_direct'], strict=True)])
    r['ceiling_ratio'] = median([
        get['rps'] / ceiling['rps'] for get, ceiling
        in zip(rounds['get_c32'], rounds['hello_c32'], strict=True)])
    print(f'{PROG}: (2) POST /api/messages ...', flush=True)
    with tempfile.NamedTemporaryFile('w', suffix='.lua') as script:
        script.write(WRK_POST)
        script.flush()
        r['post_c8'] = wrk_median(args.runs, url, 8, args.seconds, [auth],
                                  script=script.name)
    r['memory_loaded'] = memory(platform)
    print(f'{PROG}: (4) discovery ...', flush=True)
    r['discovery'] = {}
    bench_discovery(platform, r['discovery'])
    print(f'{PROG}: (5) rolling upgrade of messages under load ...', flush=True)
    bench_roll(platform, token, r)
    if not args.no_fanout:
        print(f'{PROG}: (6) Socket.IO fan-out ...', flush=True)
        with tempfile.NamedTemporaryFile(suffix='.json') as fan:
            subprocess.run([sys.executable, str(ADMIN / 'tools' / 'mfbench_fanout.py'),
                            '--lb', platform.lb, '-n', '50', '500',
                            '--json', fan.name], env=platform.env, check=True,
                           stdout=subprocess.DEVNULL)
            r['fanout'] = json.loads(Path(fan.name).read_text())['results']
    print(f'{PROG}: (7) stopping after SIGTERM ...', flush=True)
    bench_stop_times(platform, r)
    return r


def run_measurements(prog, home, measure, home_prefix, settings=None):
    """``measure(platform)`` on the platform running from ``home``, or, when
    ``home`` is None, on a private one installed for the run (with
    ``settings``) and removed afterwards (its databases too). Returns the
    results, or None after saying what failed."""
    private = home is None
    home = Path(tempfile.mkdtemp(prefix=home_prefix)) if private else home
    platform = None
    try:
        if private:
            # The host's wheelhouse (mfvars names it): no second download.
            wheels = {'WHEELHOUSE': os.environ['WHEELHOUSE']} \
                if os.environ.get('WHEELHOUSE') else {}
            # This host's database and Redis, as its platform's.
            platform = PrivatePlatform.on_free_ports(
                home, 'mfbench_', 'mfbench',
                {**host_database_settings(), **wheels, **(settings or {})})
            print(f'{prog}: installing a private platform in {home} ...',
                  flush=True)
            platform.install()
        else:
            platform = PrivatePlatform.existing(home)
        return measure(platform)
    except (RuntimeError, ScriptFailed, subprocess.CalledProcessError,
            requests.RequestException, OSError) as exc:
        detail = getattr(exc, 'stderr', '') or ''
        print(f'{prog}: error: {exc}\n{detail}', file=sys.stderr)
        return None
    finally:
        if private and platform is not None:
            platform.remove()
            subprocess.run(platform.mariadb(
                '-e', 'DROP DATABASE IF EXISTS mfbench_users; '
                'DROP DATABASE IF EXISTS mfbench_messages'), check=False)
            shutil.rmtree(home, ignore_errors=True)


def print_results(prog, results, headline, table, json_file):
    print()
    print(f"{prog}: {results['host']}, {results['cpus']} CPUs; {headline}")
    print(table)
    if json_file:
        json_file.write_text(json.dumps(results, indent=1) + '\n')
        print(f'{prog}: results in {json_file}')


def main(argv=None):
    args = parse_args(argv)
    if not shutil.which('wrk'):
        print(f'{PROG}: error: wrk is not installed (apt-get install wrk)',
              file=sys.stderr)
        return 1
    results = run_measurements(PROG, args.home,
                               lambda platform: measure(platform, args),
                               'mfbench-')
    if results is None:
        return 1
    print_results(PROG, results,
                  f"medians of {args.runs} runs of {args.seconds} s; "
                  f"{results['messages_listed']} messages listed",
                  report(results), args.json)
    return 0


if __name__ == '__main__':
    sys.exit(main())
