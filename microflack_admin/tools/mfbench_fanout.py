"""Socket.IO fan-out benchmark: how long a message posted through
``post_message`` takes to reach every connected client.

For each client count N: N python-socketio clients (asyncio, WebSocket
only) connect through the load balancer, spread over the source addresses
127.0.0.2, .3, ... (the load balancer picks a socketio instance by source
address) and over ``--procs`` client processes. Then, M times, the first
client emits ``post_message`` with a unique source, and every client
records when the ``updated_model`` push of that message arrives. The delay
of a delivery is its arrival time minus the emit time (CLOCK_MONOTONIC,
the same clock in every process of the host). One warm-up message per N
is posted first and not counted.

Printed per N: each run's p50/p99/max and lost deliveries, then the median
of the runs' p50 and p99, the worst delivery and the losses; with the CPU
the clients used (to show they were not the bottleneck) and, when the
platform's files are readable, the CPU each platform component used during
the runs. ``--json FILE`` writes all of it.

Run it through ``microflack_admin/bin/mfbench-fanout`` (see its header).
"""
import argparse
import asyncio
import importlib.util
import json
import math
import multiprocessing
import os
import platform as host_platform
import statistics
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import requests

PROG = 'mfbench-fanout'
TICKS = os.sysconf('SC_CLK_TCK')


# -- arguments ---------------------------------------------------------

def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'not an integer: {text!r}') \
            from None
    if value < 1:
        raise argparse.ArgumentTypeError(f'must be at least 1: {value}')
    return value


def positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'not a number: {text!r}') from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f'must be above 0: {text}')
    return value


def loopback_url(text):
    url = urlsplit(text)
    host = url.hostname or ''
    if url.scheme != 'http' or not host.startswith('127.') or \
            len(host.split('.')) != 4 or \
            not all(part.isdigit() and int(part) < 256
                    for part in host.split('.')):
        raise argparse.ArgumentTypeError(
            f'{text!r}: expected http://127.x.y.z[:port] (only loopback '
            f'addresses are benchmarked)')
    return f'http://{url.netloc}'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog=PROG,
        description='Socket.IO fan-out: delivery time of one posted message '
                    'to N clients connected through the load balancer.',
        epilog='The load balancer comes from --lb or $LB (source '
               'microflack_admin/mfvars). Exit status: 0 when every run '
               'completed (lost deliveries are reported, not fatal), 1 when '
               'the benchmark could not run, 2 on bad arguments.')
    parser.add_argument('--lb', type=loopback_url, default=None,
                        help='load balancer URL (default: $LB)')
    parser.add_argument('-n', '--clients', type=positive_int, nargs='+',
                        default=[50, 500], metavar='N',
                        help='client counts to measure (default: 50 500)')
    parser.add_argument('-m', '--runs', type=positive_int, default=5,
                        metavar='M', help='messages per client count '
                        '(default: 5)')
    parser.add_argument('--procs', type=positive_int, default=None,
                        metavar='P', help='client processes (default: 1 per '
                        '250 clients, at most the number of CPUs)')
    parser.add_argument('--sources', type=positive_int, default=8,
                        metavar='K', help='source addresses 127.0.0.2 ... '
                        '127.0.0.(K+1) to spread the clients over '
                        '(default: 8)')
    parser.add_argument('--connect-timeout', type=positive_float,
                        default=60.0, metavar='S',
                        help='seconds for all clients to connect '
                        '(default: 60)')
    parser.add_argument('--run-timeout', type=positive_float, default=10.0,
                        metavar='S', help='seconds a run waits for its '
                        'deliveries; missing ones count as lost '
                        '(default: 10)')
    parser.add_argument('--pause', type=float, default=0.5, metavar='S',
                        help='seconds between runs (default: 0.5)')
    parser.add_argument('--loop', choices=('asyncio', 'uvloop'),
                        default=None, help="the clients' event loop "
                        '(default: uvloop when installed: it costs the '
                        'clients less CPU)')
    parser.add_argument('--json', type=Path, default=None, metavar='FILE',
                        help='also write the results as JSON to FILE')
    parser.add_argument('--mf-home', type=Path, default=None, metavar='DIR',
                        help='platform state, to report its CPU use '
                        '(default: $MF_HOME)')
    args = parser.parse_args(argv)
    args.lb = args.lb or os.environ.get('LB')
    if not args.lb:
        parser.error('no load balancer: give --lb URL or set LB (source '
                     'microflack_admin/mfvars)')
    try:
        args.lb = loopback_url(args.lb)
    except argparse.ArgumentTypeError as exc:
        parser.error(f'LB={exc}')
    if args.sources > 250:
        parser.error('--sources: at most 250')
    if not 0 <= args.pause <= 60:
        parser.error('--pause: 0 to 60 seconds')
    if args.loop is None:
        args.loop = 'uvloop' if importlib.util.find_spec('uvloop') \
            else 'asyncio'
    elif args.loop == 'uvloop' and not importlib.util.find_spec('uvloop'):
        parser.error('--loop uvloop: uvloop is not installed')
    if args.mf_home is None and os.environ.get('MF_HOME'):
        args.mf_home = Path(os.environ['MF_HOME'])
    return args


# -- figures -----------------------------------------------------------

def percentile(values, q):
    """Nearest-rank percentile of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def summarize(delays, expected):
    figures = {'deliveries': len(delays), 'lost': expected - len(delays)}
    if delays:
        figures.update(min_ms=round(min(delays) * 1000, 2),
                       p50_ms=round(percentile(delays, 50) * 1000, 2),
                       p99_ms=round(percentile(delays, 99) * 1000, 2),
                       max_ms=round(max(delays) * 1000, 2))
    return figures


def ms(value):
    return '-' if value is None else f'{value:.1f}'


# -- platform CPU accounting (reads /proc; optional) -------------------

def _proc_stat(pid):
    """(session id, CPU seconds) of a process, or None."""
    try:
        with open(f'/proc/{pid}/stat') as file:
            fields = file.read().rsplit(')', 1)[1].split()
    except (OSError, IndexError):
        return None
    # After the command: state ppid pgrp session ... utime(12) stime(13).
    return int(fields[3]), (int(fields[11]) + int(fields[12])) / TICKS


def _pid_in(path):
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def platform_components(mf_home):
    """{component: session id}: every instance (mfrun starts each in its
    own session), the load balancer and a Redis the platform started."""
    if mf_home is None:
        return {}
    sessions = {}
    for info in sorted((mf_home / 'run' / 'instances').glob('*.info')):
        try:
            fields = dict(line.split('=', 1)
                          for line in info.read_text().splitlines()
                          if '=' in line)
            sessions[info.stem] = int(fields['PID'])
        except (OSError, KeyError, ValueError):
            continue
    for name, pid_file in (('haproxy', mf_home / 'lb' / 'haproxy.pid'),
                           ('redis', mf_home / 'redis' / 'redis.pid')):
        pid = _pid_in(pid_file)
        stat = _proc_stat(pid) if pid else None
        if stat is not None:
            sessions[name] = stat[0]
    return sessions


def cpu_by_session(sessions):
    """{component: CPU seconds so far} for the sessions' live processes."""
    wanted = {sid: name for name, sid in sessions.items()}
    totals = dict.fromkeys(sessions, 0.0)
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            stat = _proc_stat(entry)
            if stat is not None and stat[0] in wanted:
                totals[wanted[stat[0]]] += stat[1]
    return totals


# -- the client processes ----------------------------------------------

def client_process(conn, lb, indices, sources, connect_timeout, loop):
    """One client process: connects its clients, then obeys the parent's
    commands over ``conn`` until told to close."""
    if loop == 'uvloop':
        import uvloop
        uvloop.install()
    try:
        asyncio.run(ClientGroup(conn, lb, indices, sources,
                                connect_timeout).serve())
    except KeyboardInterrupt:
        pass
    finally:
        conn.close()


class ClientGroup:
    CONNECTS_AT_ONCE = 50

    def __init__(self, conn, lb, indices, sources, connect_timeout):
        self.conn = conn
        self.lb = lb
        self.indices = indices
        self.sources = sources
        self.connect_timeout = connect_timeout
        self.clients = {}
        self.sessions = {}
        # source of the expected message -> {client index: arrival time}
        self.expected = {}
        self.arrived = asyncio.Event()

    def on_update(self, index):
        expected = self.expected

        def handler(data):
            now = time.monotonic()
            try:
                if data['class'] != 'Message':
                    return
                slot = expected.get(data['model']['source'])
            except (KeyError, TypeError):
                return
            if slot is not None and index not in slot:
                slot[index] = now
                if len(slot) == len(self.clients):
                    self.arrived.set()
        return handler

    async def connect_one(self, index, limit):
        import aiohttp
        import socketio

        source = self.sources[index % len(self.sources)]
        if source not in self.sessions:
            self.sessions[source] = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(local_addr=(source, 0),
                                               limit=0))
        client = socketio.AsyncClient(reconnection=False,
                                      http_session=self.sessions[source])
        client.on('updated_model', self.on_update(index))
        async with limit:
            await client.connect(self.lb, transports=['websocket'],
                                 socketio_path='/socket.io',
                                 wait_timeout=self.connect_timeout)
        self.clients[index] = client

    async def connect_all(self):
        limit = asyncio.Semaphore(self.CONNECTS_AT_ONCE)
        tasks = [asyncio.ensure_future(self.connect_one(index, limit))
                 for index in self.indices]
        done, pending = await asyncio.wait(tasks,
                                           timeout=self.connect_timeout)
        for task in pending:
            task.cancel()
        errors = [repr(task.exception()) for task in done
                  if task.exception() is not None]
        if pending:
            errors.append(f'{len(pending)} not connected within '
                          f'{self.connect_timeout} s')
        return errors

    async def receive(self):
        return await asyncio.get_running_loop().run_in_executor(
            None, self.conn.recv)

    async def serve(self):
        errors = await self.connect_all()
        self.conn.send(('connected', len(self.clients), errors[:5]))
        while True:
            command, *args = await self.receive()
            if command == 'expect':
                self.expected[args[0]] = {}
                self.arrived.clear()
                self.conn.send(('ok', time.process_time()))
            elif command == 'post':
                marker, token = args
                client = self.clients[min(self.clients)]
                started = time.monotonic()
                await client.emit('post_message', ({'source': marker}, token))
                self.conn.send(('posted', started))
            elif command == 'collect':
                marker, deadline = args
                if len(self.expected[marker]) < len(self.clients):
                    try:
                        await asyncio.wait_for(
                            self.arrived.wait(),
                            max(0.0, deadline - time.monotonic()))
                    except TimeoutError:
                        pass
                arrivals = self.expected.pop(marker)
                self.conn.send(('arrivals', list(arrivals.values()),
                                time.process_time()))
            elif command == 'close':
                await self.close()
                self.conn.send(('closed',))
                return

    async def close(self):
        await asyncio.gather(*(client.disconnect()
                               for client in self.clients.values()),
                             return_exceptions=True)
        for session in self.sessions.values():
            await session.close()


class Processes:
    """The parent's side of the client processes."""

    def __init__(self, lb, count, procs, sources, connect_timeout, loop):
        context = multiprocessing.get_context('spawn')
        self.children = []
        for number in range(procs):
            indices = list(range(number, count, procs))
            parent, child = context.Pipe()
            process = context.Process(
                target=client_process, daemon=True,
                args=(child, lb, indices, sources, connect_timeout, loop))
            process.start()
            child.close()
            self.children.append((process, parent, len(indices)))

    def ask(self, conn, timeout):
        if not conn.poll(timeout):
            raise RuntimeError(f'a client process did not answer within '
                               f'{timeout:.0f} s')
        return conn.recv()

    def connected(self, timeout):
        total, errors = 0, []
        for _, conn, _ in self.children:
            _, count, child_errors = self.ask(conn, timeout)
            total += count
            errors += child_errors
        return total, errors

    def everyone(self, message, timeout=10):
        for _, conn, _ in self.children:
            conn.send(message)
        return [self.ask(conn, timeout) for _, conn, _ in self.children]

    def post(self, marker, token):
        _, conn, _ = self.children[0]
        conn.send(('post', marker, token))
        return self.ask(conn, 10)[1]

    def close(self):
        for _, conn, _ in self.children:
            try:
                conn.send(('close',))
                self.ask(conn, 10)
            except (OSError, EOFError, RuntimeError):
                pass
            conn.close()
        for process, _, _ in self.children:
            process.join(5)
            if process.is_alive():
                process.kill()
                process.join(5)


# -- the benchmark -----------------------------------------------------

def register(lb):
    """A new user and its token, through the load balancer."""
    http = requests.Session()
    http.trust_env = False
    nickname = f'bench_{uuid.uuid4().hex[:10]}'
    rv = http.post(f'{lb}/api/users', timeout=10,
                   json={'nickname': nickname, 'password': 'bench'})
    if rv.status_code != 201:
        raise RuntimeError(f'POST /api/users answered {rv.status_code}: '
                           f'{rv.text[:200]}')
    rv = http.post(f'{lb}/api/tokens', auth=(nickname, 'bench'), timeout=10)
    if rv.status_code != 200:
        raise RuntimeError(f'POST /api/tokens answered {rv.status_code}: '
                           f'{rv.text[:200]}')
    return nickname, rv.json()['token']


def one_run(processes, count, token, marker, timeout):
    """Post one message; (delays in seconds, client CPU seconds used)."""
    answers = processes.everyone(('expect', marker))
    cpu_before = sum(answer[1] for answer in answers)
    started = processes.post(marker, token)
    answers = processes.everyone(('collect', marker,
                                  started + timeout), timeout=timeout + 10)
    delays = [arrival - started for answer in answers
              for arrival in answer[1]]
    cpu_after = sum(answer[2] for answer in answers)
    return delays, cpu_after - cpu_before


def bench_clients(args, count, token, out):
    procs = args.procs or min(os.cpu_count() or 1, max(1, count // 250))
    procs = min(procs, count)
    sources = [f'127.0.0.{2 + k}' for k in range(args.sources)]
    print(f'\n{count} clients: connecting over {procs} process(es) from '
          f'{len(sources)} source address(es)', flush=True)
    started = time.monotonic()
    processes = Processes(args.lb, count, procs, sources,
                          args.connect_timeout, args.loop)
    try:
        connected, errors = processes.connected(args.connect_timeout + 30)
        connect_seconds = time.monotonic() - started
        if connected < count:
            raise RuntimeError(f'only {connected} of {count} clients '
                               f'connected: {"; ".join(errors)}')
        print(f'  connected in {connect_seconds:.1f} s', flush=True)
        prefix = uuid.uuid4().hex[:8]
        one_run(processes, count, token, f'fanout {prefix} warm-up',
                args.run_timeout)
        components = platform_components(args.mf_home)
        server_before = cpu_by_session(components)
        wall_before = time.monotonic()
        runs, all_delays, client_cpu = [], [], 0.0
        for number in range(1, args.runs + 1):
            time.sleep(args.pause)
            delays, cpu = one_run(processes, count, token,
                                  f'fanout {prefix} run {number}',
                                  args.run_timeout)
            figures = summarize(delays, count)
            figures['client_cpu_ms'] = round(cpu * 1000, 1)
            runs.append(figures)
            all_delays += delays
            client_cpu += cpu
            print(f"  run {number}: first {ms(figures.get('min_ms'))} ms  "
                  f"p50 {ms(figures.get('p50_ms'))} ms  "
                  f"p99 {ms(figures.get('p99_ms'))} ms  "
                  f"max {ms(figures.get('max_ms'))} ms  "
                  f"lost {figures['lost']}  "
                  f"client CPU {cpu * 1000:.0f} ms", flush=True)
        wall = time.monotonic() - wall_before
        server_cpu = {name: after - server_before.get(name, 0.0)
                      for name, after in
                      cpu_by_session(components).items()}
    finally:
        processes.close()
    measured = [run for run in runs if 'p50_ms' in run]
    result = {
        'clients': count, 'runs': args.runs, 'client_processes': procs,
        'source_addresses': len(sources),
        'connect_seconds': round(connect_seconds, 2),
        'median_p50_ms': round(statistics.median(
            run['p50_ms'] for run in measured), 2) if measured else None,
        'median_p99_ms': round(statistics.median(
            run['p99_ms'] for run in measured), 2) if measured else None,
        'max_ms': round(max(all_delays) * 1000, 2) if all_delays else None,
        'all_deliveries': summarize(all_delays, count * args.runs),
        'lost': sum(run['lost'] for run in runs),
        'client_cpu_ms_per_run': round(client_cpu * 1000 / args.runs, 1),
        'client_cpu_percent': round(100 * client_cpu / wall, 1)
        if wall else None,
        'server_cpu_ms_per_run': {name: round(seconds * 1000 / args.runs, 1)
                                  for name, seconds in server_cpu.items()},
        'wall_seconds': round(wall, 2),
        'per_run': runs,
    }
    print(f"  {count} clients, median of {args.runs} runs: "
          f"p50 {ms(result['median_p50_ms'])} ms  "
          f"p99 {ms(result['median_p99_ms'])} ms  "
          f"max {ms(result['max_ms'])} ms  lost {result['lost']}")
    print(f"  client CPU: {result['client_cpu_ms_per_run']:.0f} ms per run "
          f"({result['client_cpu_percent']:.0f}% of one core over "
          f"{wall:.1f} s)")
    if server_cpu:
        busy = sorted(result['server_cpu_ms_per_run'].items(),
                      key=lambda item: -item[1])
        print('  platform CPU per run: ' + ', '.join(
            f'{name} {value:.0f} ms' for name, value in busy if value >= 1))
    out.append(result)


def main(argv=None):
    args = parse_args(argv)
    try:
        import aiohttp  # noqa: F401
        import socketio  # noqa: F401
    except ImportError as exc:
        print(f'{PROG}: error: {exc}: run it through '
              f'microflack_admin/bin/mfbench-fanout, or install '
              f'microflack_admin/tests/requirements.txt', file=sys.stderr)
        return 1
    print(f'{PROG}: {args.lb}, clients {" ".join(map(str, args.clients))}, '
          f'{args.runs} runs each, {args.loop} clients; host '
          f'{host_platform.node()}, {os.cpu_count()} CPUs', flush=True)
    results = []
    try:
        nickname, token = register(args.lb)
        for count in args.clients:
            bench_clients(args, count, token, results)
    except (RuntimeError, requests.RequestException, OSError) as exc:
        print(f'{PROG}: error: {exc}', file=sys.stderr)
        return 1
    finally:
        if args.json is not None and results:
            args.json.write_text(json.dumps(
                {'lb': args.lb, 'cpus': os.cpu_count(), 'loop': args.loop,
                 'time': int(time.time()), 'results': results},
                indent=1) + '\n')
    print(f'\n{"clients":>8} {"p50 ms":>8} {"p99 ms":>8} {"max ms":>8} '
          f'{"lost":>6} {"client CPU ms/run":>18}')
    for result in results:
        print(f"{result['clients']:>8} {ms(result['median_p50_ms']):>8} "
              f"{ms(result['median_p99_ms']):>8} {ms(result['max_ms']):>8} "
              f"{result['lost']:>6} "
              f"{result['client_cpu_ms_per_run']:>18.0f}")
    print('(p50, p99: medians of the runs; max: worst delivery of all runs)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
