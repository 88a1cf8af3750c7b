"""The cluster benchmark (issue 18): the platform on several hosts
(``mfcluster up``: 3 registry members, 2 load balancers with a floating
address, a store, the workers), and what each failure of the issue costs
under steady load through the floating address (``--clients`` threads of
GETs and POSTs, ``--sockets`` Socket.IO clients that catch up from the
changes feed when they reconnect, as the page does):

1. a worker host dies (every process SIGKILLed), 5. it comes back
   (``revive-host``, what it runs at boot);
4. a worker cut off from the registry, not from the load balancers;
2. the etcd leader's host dies;
3. the active load balancer's host dies.

The cluster is made for the run (its own name and subnet, in a temporary
MF_HOME, the builds from WHEELHOUSE) and removed afterwards, unless
``--keep``. Root only. The scenarios are those of tools/cluster_scenarios.py,
which tests/test_cluster.py checks.

Run it through ``microflack_admin/bin/mfbench-cluster``.
"""
import argparse
import json
import os
import platform as host_platform
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

from cluster_scenarios import (
    Chat,
    Cluster,
    ClusterError,
    fetch,
    free_subnet,
    lb_dies,
    leader_dies,
    parse_up,
    wait_for,
    worker_cut_off,
    worker_dies,
)
from private_platform import clean_environ

PROG = 'mfbench-cluster'


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog=PROG, description='The platform on several hosts (network '
        'namespaces): what a dead worker, a partition, a dead etcd leader '
        'and a dead load balancer cost under load.')
    parser.add_argument('--hosts', type=int, default=8,
                        help='hosts of the cluster (8 at least: 2 workers)')
    parser.add_argument('--clients', type=int, default=8)
    parser.add_argument('--sockets', type=int, default=20,
                        help='Socket.IO clients')
    parser.add_argument('--partition', type=int, default=16,
                        help='seconds a worker stays cut off')
    parser.add_argument('--keep', action='store_true',
                        help='leave the cluster running (its MF_HOME is '
                             'printed)')
    parser.add_argument('--json', type=Path, help='write the results here')
    args = parser.parse_args(argv)
    if args.hosts < 8:
        parser.error('--hosts must be at least 8')
    for name in ('clients', 'sockets', 'partition'):
        if getattr(args, name) < 1:
            parser.error(f'--{name} must be at least 1')
    return args


def measure(cluster, args):
    chat = Chat(cluster)
    workers = cluster.workers
    scenarios = [
        ('1+5. a worker host dies and comes back',
         lambda: worker_dies(cluster, chat, workers[-1], args.clients,
                             args.sockets)),
        ('4. a worker cut off from the registry',
         lambda: worker_cut_off(cluster, chat, workers[0], args.partition,
                                args.clients)),
        ('2. the etcd leader\'s host dies',
         lambda: leader_dies(cluster, chat, args.clients)),
        ('3. the active load balancer\'s host dies',
         lambda: lb_dies(cluster, chat, args.clients, args.sockets)),
    ]
    results = {}
    for name, scenario in scenarios:
        print(f'{PROG}: {name} ...', flush=True)
        # Each starts on a cluster at full strength.
        if not wait_for(lambda: cluster.run('status', check=False)
                        .returncode == 0, 60, 0.5):
            raise ClusterError('the cluster is not well: '
                               + cluster.run('status', check=False).stdout)
        results[name] = scenario().figures
    return results


def report(results):
    lines = []
    for name, figures in results.items():
        lines.append(name)
        for key, value in figures.items():
            lines.append(f'    {key:45} {value}')
    return '\n'.join(lines)


def main(argv=None):
    args = parse_args(argv)
    if os.geteuid() != 0:
        print(f'{PROG}: error: run as root (network namespaces)',
              file=sys.stderr)
        return 1
    env = clean_environ()
    if os.environ.get('WHEELHOUSE'):
        env['WHEELHOUSE'] = os.environ['WHEELHOUSE']   # no second download
    home = Path(tempfile.mkdtemp(prefix='mfbench-cluster-'))
    cluster = Cluster(home, 'b' + secrets.token_hex(3), free_subnet(), env)
    started = time.monotonic()
    try:
        print(f'{PROG}: making a cluster of {args.hosts} hosts in {home} ...',
              flush=True)
        cluster.printed = parse_up(cluster.run(
            'up', '--hosts', str(args.hosts), timeout=900).stdout)
        up_seconds = round(time.monotonic() - started, 1)
        if not wait_for(lambda: (fetch(cluster.vip, '/api/messages') or
                                 (0,))[0] == 200, 30):
            raise ClusterError(f'the chat does not answer at {cluster.vip}')
        scenarios = measure(cluster, args)
    except (ClusterError, OSError) as exc:
        print(f'{PROG}: error: {exc}', file=sys.stderr)
        return 1
    finally:
        if args.keep:
            print(f'{PROG}: the cluster runs: MF_HOME={home} '
                  f'mfcluster status --name {cluster.name}')
        else:
            cluster.down()
            shutil.rmtree(home, ignore_errors=True)
    results = {'host': host_platform.node(), 'cpus': os.cpu_count(),
               'hosts': args.hosts, 'clients': args.clients,
               'sockets': args.sockets, 'up (s)': up_seconds,
               'scenarios': scenarios}
    print()
    print(f"{PROG}: {results['host']}, {results['cpus']} CPUs; "
          f"{args.hosts} hosts, made in {up_seconds} s; {args.clients} "
          f"clients (GET + POST) and {args.sockets} Socket.IO clients "
          f"through the floating address")
    print(report(scenarios))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + '\n')
        print(f'{PROG}: results in {args.json}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
