"""mfbench's own logic: reading wrk's report and judging the figures
against the targets of issue 7 (the measurements need a whole platform and
are not tests)."""
import copy

import pytest
from mfbench import parse_wrk, report

WRK_OUTPUT = """\
Running 1s test @ http://127.0.0.1:28080/api/nothing-here
  1 threads and 2 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.76ms    5.97ms  56.69ms   96.30%
    Req/Sec     2.93k   633.67     3.81k    54.55%
  Latency Distribution
     50%  472.00us
     75%  821.00us
     90%    1.59ms
     99%   38.85ms
  3207 requests in 1.10s, 588.79KB read
  Socket errors: connect 0, read 2, write 1, timeout 4
  Non-2xx or 3xx responses: 3207
Requests/sec:   2915.09
Transfer/sec:    535.19KB
"""


def test_parse_wrk():
    assert parse_wrk(WRK_OUTPUT) == {
        'rps': 2915.09, 'p50_ms': pytest.approx(0.472),
        'p99_ms': 38.85, 'errors': 3207 + 7}


def test_parse_wrk_seconds_and_no_errors():
    out = WRK_OUTPUT.replace('38.85ms', '1.20s').replace(
        '  Socket errors: connect 0, read 2, write 1, timeout 4\n', '').replace(
        '  Non-2xx or 3xx responses: 3207\n', '')
    parsed = parse_wrk(out)
    assert parsed['p99_ms'] == 1200 and parsed['errors'] == 0


def run(rps, p50=1.0, errors=0):
    return {'rps': rps, 'p50_ms': p50, 'p99_ms': 3 * p50, 'errors': errors}


def memory(*workers_mib):
    return {f'svc{i}': {'master_mib': 30, 'workers_mib': [mib]}
            for i, mib in enumerate(workers_mib)}


RESULTS = {
    'get_c1': run(700, p50=1.2), 'get_c32': run(1900, p50=16),
    'get_c32_direct': run(2000), 'post_c8': run(700), 'hello_c32': run(4000),
    'discovery': {'routed_after_registration_s': 0.2,
                  'killed_out_of_rotation_s': 1.0, 'killed_failed_gets': 0,
                  'killed_steady_gets': 300},
    'roll_s': 20.0, 'roll_ok': True, 'roll_failed': 0, 'roll_requests': 600,
    'roll_lost': 0, 'roll_posted': 200, 'roll_leftovers': [],
    'roll_new_tag_everywhere': True,
    'fanout': [{'clients': 50, 'median_p50_ms': 10, 'median_p99_ms': 20,
                'lost': 0}],
    'memory_fresh': memory(50, 55), 'memory_idle': memory(52, 58),
    'memory_loaded': memory(60, 70),
    'stop_s': {'users': 2.5, 'socketio': 4.0},
}


def rows(results):
    """{row name: verdict ('ok', 'MISSED' or '')}."""
    verdicts = {}
    for line in report(results).splitlines():
        name = line[:48].strip()
        verdicts[name] = line.split()[-1] if line.endswith(('  ok', 'MISSED')) \
            else ''
    return verdicts


def test_every_target_met():
    verdicts = rows(RESULTS)
    assert 'MISSED' not in verdicts.values()
    assert verdicts['load balancer cost'] == 'ok'        # 5%
    assert verdicts['(1) / ceiling'] == 'ok'             # 47.5%
    assert {'(7) RSS per worker, fresh (max)', '(7) RSS per worker, idle (max)',
            '(7) RSS per worker, after load (max)'} <= set(verdicts)


@pytest.mark.parametrize('change, missed', [
    (lambda r: r['get_c32_direct'].update(rps=2400), 'load balancer cost'),
    (lambda r: r['hello_c32'].update(rps=5000), '(1) / ceiling'),
    (lambda r: r['get_c1'].update(p50_ms=2.5), 'c=1 p50'),
    (lambda r: (r['get_c32'].update(rps=900), r['get_c32_direct'].update(rps=950),
                r['hello_c32'].update(rps=2000)),
     '(1) GET /api/messages c=32 via LB'),
    (lambda r: r['memory_idle']['svc1']['workers_mib'].__setitem__(0, 61),
     '(7) RSS per worker, idle (max)'),
    (lambda r: r.update(roll_failed=1), 'failed requests'),
    (lambda r: r['discovery'].update(killed_out_of_rotation_s=None),
     'kill -9 -> out of rotation'),
    (lambda r: r['fanout'][0].update(median_p99_ms=46),
     '(6) fan-out to 50 clients p50 / p99'),
    (lambda r: r['stop_s'].update(users=5.5), 'slowest stop after SIGTERM'),
])
def test_a_missed_target_is_marked(change, missed):
    results = copy.deepcopy(RESULTS)
    change(results)
    verdicts = rows(results)
    assert verdicts[missed] == 'MISSED'
    assert list(verdicts.values()).count('MISSED') == 1


def test_ratios_of_the_rounds_are_preferred():
    """The ratios taken within each round (what mfbench writes) win over
    the ratio of the medians."""
    results = copy.deepcopy(RESULTS)
    results.update(lb_cost=0.12, ceiling_ratio=0.39)
    verdicts = rows(results)
    assert verdicts['load balancer cost'] == 'MISSED'
    assert verdicts['(1) / ceiling'] == 'MISSED'
    assert '12%' in report(results) and '39%' in report(results)


def test_the_cost_of_tls_is_judged_when_measured():
    results = copy.deepcopy(RESULTS)
    assert 'TLS termination cost' not in rows(results)
    results.update(get_c32_https=run(1700), tls_cost=0.105)
    assert rows(results)['TLS termination cost'] == 'ok'
    assert '1700 req/s' in report(results) and '10%' in report(results)
    results['tls_cost'] = 0.16
    assert rows(results)['TLS termination cost'] == 'MISSED'


def test_memory_after_load_is_reported_not_judged():
    results = copy.deepcopy(RESULTS)
    results['memory_loaded'] = memory(90)
    assert rows(results)['(7) RSS per worker, after load (max)'] == ''
