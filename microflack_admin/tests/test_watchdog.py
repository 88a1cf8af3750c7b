"""The watchdog's decisions (tools/watchdog.py): which instance is killed,
when, and which never is. The supervisor and the kill are stand-ins here;
tests/test_faults.py checks the whole on a platform."""
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import watchdog
from watchdog import Judge, Watchdog, watched_instances

from microflack_common.testing import wait_until

TIMEOUT, GRACE = 30, 60


def test_a_healthy_instance_is_never_due():
    judge = Judge(TIMEOUT, GRACE)
    assert all(judge.observe('a', 10, True, t) is None for t in range(500))


def test_an_instance_failing_every_probe_is_due_after_the_timeout():
    judge = Judge(TIMEOUT, GRACE)
    judge.observe('a', 10, True, 0)
    assert judge.observe('a', 10, False, 100) is None      # the first failure
    assert judge.observe('a', 10, False, 129.9) is None
    assert judge.observe('a', 10, False, 130) == 30


def test_one_good_probe_starts_the_count_again():
    judge = Judge(TIMEOUT, GRACE)
    judge.observe('a', 10, True, 0)
    judge.observe('a', 10, False, 1)
    judge.observe('a', 10, True, 29)
    assert judge.observe('a', 10, False, 30) is None
    assert judge.observe('a', 10, False, 59) is None
    assert judge.observe('a', 10, False, 60) == 30


def test_a_new_process_starts_afresh():
    judge = Judge(TIMEOUT, GRACE)
    judge.observe('a', 10, True, 0)
    judge.observe('a', 10, False, 1)
    # Started again (pid 11): still starting, its failures do not count.
    assert judge.observe('a', 11, False, 40) is None
    assert judge.observe('a', 11, False, 99) is None
    # Its grace over (60 s after it was first seen), they count.
    assert judge.observe('a', 11, False, 100) is None
    assert judge.observe('a', 11, False, 130) == 30


def test_a_starting_instance_is_not_due_before_its_grace_and_the_timeout():
    judge = Judge(TIMEOUT, GRACE)
    for t in range(0, 89):
        assert judge.observe('a', 10, False, t) is None
    assert judge.observe('a', 10, False, 90) == 30


def test_an_instance_that_answered_once_has_no_grace():
    judge = Judge(TIMEOUT, GRACE)
    judge.observe('a', 10, False, 0)
    judge.observe('a', 10, True, 1)
    judge.observe('a', 10, False, 2)
    assert judge.observe('a', 10, False, 32) == 30


def test_instances_are_judged_apart():
    judge = Judge(TIMEOUT, GRACE)
    judge.observe('a', 10, True, 0)
    judge.observe('b', 20, True, 0)
    judge.observe('a', 10, False, 1)
    for t in range(1, 40):
        judge.observe('b', 20, t % 2 == 0, t)
    assert judge.observe('a', 10, False, 31) == 30
    assert judge.observe('b', 20, False, 40) is None


def record(folder, name, **fields):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f'{name}.info').write_text(''.join(
        f'{key}={value}\n' for key, value in fields.items()))


def test_the_watched_instances(tmp_path):
    folder = tmp_path / 'instances'
    record(folder, 'native', SERVICE='messages', PORT=1000, RUNTIME='native',
           PID=5, SUPERVISED=1)
    record(folder, 'container', SERVICE='ui', PORT=1001, RUNTIME='docker',
           PID=6, SUPERVISED='')
    record(folder, 'stopping', SERVICE='ui', PORT=1002, RUNTIME='native',
           PID=7, SUPERVISED=1, STOPPING=1)
    # Started before the supervisor ran instances: nothing would restart it.
    record(folder, 'unsupervised', SERVICE='ui', PORT=1003, RUNTIME='native',
           PID=8, SUPERVISED='')
    record(folder, 'no_port', SERVICE='ui', PORT='', SUPERVISED=1)
    (folder / 'native.env').write_text('SECRET=1\n')
    assert sorted(watched_instances(folder)) == ['container', 'native']
    assert watched_instances(tmp_path / 'none') == {}


class Platform:
    """An MF_HOME with instance records and a stand-in supervisor, whose
    instances answer as ``healthy`` says; kills are recorded."""

    def __init__(self, home, monkeypatch):
        self.home = home
        self.instances = home / 'run' / 'instances'
        self.pids = {}
        self.healthy = {}
        self.kills = []
        monkeypatch.setattr(watchdog, 'supervised_pids',
                            lambda socket_path: dict(self.pids))
        monkeypatch.setattr(watchdog, 'probe', self.probe)
        monkeypatch.setattr(watchdog, 'alive', lambda pid: True)
        monkeypatch.setattr(watchdog.os, 'getpgid', lambda pid: pid)
        monkeypatch.setattr(watchdog.os, 'killpg',
                            lambda pid, sig: self.kills.append((pid, sig)))

    def add(self, name, port, pid, healthy=True):
        record(self.instances, name, SERVICE='messages', PORT=port,
               ADDRESS=f'192.0.2.7:{port}', RUNTIME='native', PID=pid,
               SUPERVISED=1)
        self.pids[name] = pid
        self.healthy[port] = healthy

    def probe(self, address, timeout):
        # Probed at the address the record gives.
        host, _, port = address.rpartition(':')
        assert host == '192.0.2.7'
        return self.healthy[int(port)]


@pytest.fixture
def platform(tmp_path, monkeypatch):
    return Platform(tmp_path, monkeypatch)


def rounds(dog, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        dog.round()


def test_a_hung_instance_is_killed_once(platform, caplog):
    platform.add('good', 1000, 100)
    platform.add('hung', 1001, 200)
    dog = Watchdog(platform.home, timeout=0.5, interval=0.05,
                   start_grace=10, probe_timeout=0.05)
    rounds(dog, 0.3)
    platform.healthy[1001] = False
    with caplog.at_level(logging.WARNING, logger='watchdog'):
        rounds(dog, 1.2)
    # Once: the supervisor still reports the old pid for a moment.
    assert platform.kills == [(200, signal.SIGKILL)]
    [line] = [r.getMessage() for r in caplog.records]
    assert line.startswith('killed hung (pid 200 and its process group): '
                           'it failed every health check for 0.5 s')
    assert 'the supervisor starts it again' in line
    # Started again, serving, then hung again: killed again.
    platform.pids['hung'] = 201
    platform.healthy[1001] = True
    rounds(dog, 0.3)
    platform.healthy[1001] = False
    rounds(dog, 1.0)
    assert platform.kills == [(200, signal.SIGKILL), (201, signal.SIGKILL)]


def test_a_stopping_instance_is_not_killed(platform):
    platform.add('draining', 1000, 100)
    dog = Watchdog(platform.home, timeout=0.3, interval=0.05,
                   start_grace=10, probe_timeout=0.05)
    rounds(dog, 0.2)
    # As mfkill does, then the instance drains and answers no more.
    with open(platform.instances / 'draining.info', 'a') as file:
        file.write('STOPPING=1\n')
    platform.healthy[1000] = False
    rounds(dog, 0.8)
    assert platform.kills == []


def test_a_stop_that_begins_just_before_the_kill_wins(platform, monkeypatch):
    platform.add('hung', 1000, 100)
    dog = Watchdog(platform.home, timeout=0.3, interval=0.05,
                   start_grace=10, probe_timeout=0.05)
    rounds(dog, 0.2)
    platform.healthy[1000] = False
    real_read = watchdog.read_record

    def stopping_now(path):
        fields = real_read(path)
        return {**fields, 'STOPPING': '1'} if fields else fields
    monkeypatch.setattr(watchdog, 'read_record', stopping_now)
    # The records were read as not stopping, the re-read just before the
    # kill says otherwise.
    monkeypatch.setattr(watchdog, 'watched_instances',
                        lambda folder: {'hung': {'PORT': '1000',
                                                 'SUPERVISED': '1'}})
    rounds(dog, 0.8)
    assert platform.kills == []


def test_a_starting_instance_gets_its_grace(platform):
    platform.add('starting', 1000, 100, healthy=False)
    dog = Watchdog(platform.home, timeout=0.2, interval=0.05,
                   start_grace=0.6, probe_timeout=0.05)
    rounds(dog, 0.6)
    assert platform.kills == []
    rounds(dog, 0.6)
    assert platform.kills == [(100, signal.SIGKILL)]


def test_a_program_the_supervisor_does_not_run_is_left_alone(platform):
    platform.add('stopped', 1000, 100, healthy=False)
    del platform.pids['stopped']
    dog = Watchdog(platform.home, timeout=0.2, interval=0.05,
                   start_grace=0, probe_timeout=0.05)
    rounds(dog, 0.6)
    assert platform.kills == []


def test_a_hung_probe_does_not_delay_the_round(platform, monkeypatch):
    platform.add('hung', 1000, 100)
    platform.add('good', 1001, 200)
    calls = []

    def probe(address, timeout):
        port = int(address.rpartition(':')[2])
        calls.append(port)
        if port == 1000:
            time.sleep(5)       # past its timeout: as if it never ended
        return True
    monkeypatch.setattr(watchdog, 'probe', probe)
    dog = Watchdog(platform.home, timeout=0.5, interval=0.05,
                   start_grace=0, probe_timeout=0.1)
    started = time.monotonic()
    rounds(dog, 1.0)
    assert time.monotonic() - started < 1.3
    assert calls.count(1001) >= 10           # probed every round
    assert calls.count(1000) == 1            # one probe at a time
    assert platform.kills == [(100, signal.SIGKILL)]


def test_a_real_process_group_is_killed(tmp_path, monkeypatch):
    """A process group standing for an instance (a master and a worker,
    both stopped), on a port nobody answers: gone after the timeout."""
    master = subprocess.Popen(
        [sys.executable, '-c', 'import subprocess, sys, time; '
         'subprocess.Popen([sys.executable, "-c", "import time; '
         'time.sleep(60)"]); time.sleep(60)'], start_new_session=True)
    try:
        wait_until(lambda: subprocess.run(
            ['pgrep', '-P', str(master.pid)], capture_output=True).stdout,
            timeout=10)
        worker = int(subprocess.run(['pgrep', '-P', str(master.pid)],
                                    capture_output=True).stdout.split()[0])
        master.send_signal(signal.SIGSTOP)
        record(tmp_path / 'run' / 'instances', 'hung', SERVICE='messages',
               PORT=9, RUNTIME='native', PID=master.pid, SUPERVISED=1)
        monkeypatch.setattr(watchdog, 'supervised_pids',
                            lambda socket_path: {'hung': master.pid})
        dog = Watchdog(tmp_path, timeout=0.3, interval=0.05, start_grace=0,
                       probe_timeout=0.1)
        deadline = time.monotonic() + 3
        while master.poll() is None and time.monotonic() < deadline:
            dog.round()
        assert master.wait(5) == -signal.SIGKILL
        wait_until(lambda: not Path(f'/proc/{worker}').exists(), timeout=5)
    finally:
        if master.poll() is None:
            master.kill()


def test_a_container_is_killed_through_its_main_process(tmp_path, monkeypatch,
                                                         caplog):
    record(tmp_path / 'run' / 'instances', 'box', SERVICE='ui', PORT=9,
           RUNTIME='docker', PID=1, SUPERVISED='')
    kills = []
    monkeypatch.setattr(watchdog, 'container_pid', lambda name: 4242)
    monkeypatch.setattr(watchdog, 'probe', lambda port, timeout: False)
    monkeypatch.setattr(watchdog, 'alive', lambda pid: True)
    monkeypatch.setattr(watchdog.os, 'kill',
                        lambda pid, sig: kills.append((pid, sig)))
    dog = Watchdog(tmp_path, timeout=0.2, interval=0.05, start_grace=0,
                   probe_timeout=0.05)
    with caplog.at_level(logging.WARNING, logger='watchdog'):
        rounds(dog, 0.6)
    assert kills == [(4242, signal.SIGKILL)]
    assert "Docker's restart policy starts it again" in caplog.text


@pytest.mark.parametrize('args', [
    [], ['--home'], ['--home', '/nonexistent/mf'],
    ['--home', '/tmp', '--timeout', '0'],
    ['--home', '/tmp', '--interval', 'x'],
    ['--home', '/tmp', '--start-grace', '-1'],
])
def test_bad_arguments_print_the_usage(args):
    result = subprocess.run(
        [sys.executable, str(Path(watchdog.__file__)), *args],
        capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert result.stderr.startswith('usage: watchdog.py')
    assert 'Traceback' not in result.stderr
