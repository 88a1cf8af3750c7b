"""The offline sweep and its background thread."""
import threading
import time

import pytest

from microflack_common.config import ConfigError
from microflack_common.testing import wait_until
from microflack_users import tasks
from microflack_users.tasks import OfflineSweep, sweep_offline_users


def test_sweep_marks_silent_users_offline(app, add_user, rows, pusher,
                                          clock):
    gone = add_user('gone', online=True, last_seen_at=clock.now - 61)
    add_user('here', online=True, last_seen_at=clock.now - 60)
    add_user('left', online=False, last_seen_at=clock.now - 600)
    with app.app_context():
        assert sweep_offline_users(60) == 1
    assert [(row['nickname'], row['online']) for row in rows()] == \
        [('gone', False), ('here', True), ('left', False)]
    # Through the ORM: the change is pushed (and only that one).
    assert [(name, model['id'], model['online'])
            for name, model in pusher.pushes] == [('User', gone, False)]
    assert rows()[0]['last_seen_at'] == clock.now - 61

    pusher.pushes.clear()
    with app.app_context():
        assert sweep_offline_users(60) == 0
    assert pusher.pushes == []


def test_run_once_uses_the_configured_threshold(app, add_user, rows, clock,
                                                monkeypatch):
    add_user('susan', online=True, last_seen_at=clock.now - 10)
    sweep = OfflineSweep(app)
    assert sweep.interval == app.config['USERS_SWEEP_INTERVAL'] == 5
    assert sweep.offline_after == app.config['USERS_OFFLINE_AFTER'] == 60
    assert sweep.run_once() == 0
    assert OfflineSweep(app, offline_after=5).run_once() == 1
    assert rows()[0]['online'] is False


def sweep_threads():
    return [thread for thread in threading.enumerate()
            if thread.name == 'users-offline-sweep']


def test_sweep_thread_starts_and_stops(app, add_user, rows, pusher):
    stale = time.time() - 120
    add_user('susan', online=True, last_seen_at=int(stale))
    sweep = OfflineSweep(app, interval=0.01)
    assert not sweep.running and sweep_threads() == []
    assert sweep.start() is sweep
    try:
        assert sweep.running
        assert sweep.start() is sweep           # starting twice: one thread
        assert len(sweep_threads()) == 1
        assert wait_until(lambda: pusher.pushes, 5)
    finally:
        sweep.stop()
    assert not sweep.running and sweep_threads() == []
    assert rows()[0]['online'] is False

    # Stopped means stopped: a newly stale user stays as she is.
    add_user('david', online=True, last_seen_at=int(stale))
    time.sleep(0.1)
    assert rows()[1]['online'] is True

    # ...until it is started again.
    sweep.start()
    try:
        assert wait_until(lambda: pusher.pushes, 5)
    finally:
        sweep.stop()
    assert rows()[1]['online'] is False


def test_sweep_errors_are_logged_and_the_loop_goes_on(app, monkeypatch,
                                                      caplog):
    calls = []

    def flaky(offline_after):
        calls.append(offline_after)
        if len(calls) == 1:
            raise RuntimeError('database went away')
        return 0
    monkeypatch.setattr(tasks, 'sweep_offline_users', flaky)
    sweep = OfflineSweep(app, interval=0.01).start()
    try:
        assert wait_until(lambda: len(calls) >= 3, 5)
    finally:
        sweep.stop()
    assert 'offline sweep failed' in caplog.text
    assert 'database went away' in caplog.text
    assert calls[:3] == [60, 60, 60]


def test_sweep_interval_must_be_positive(app):
    for interval in (0, -1):
        with pytest.raises(ConfigError, match='USERS_SWEEP_INTERVAL'):
            OfflineSweep(app, interval=interval)


def test_create_app_starts_no_thread(app):
    from microflack_users.app import create_app
    from microflack_users.config import TestConfig
    create_app(TestConfig)
    assert sweep_threads() == []
