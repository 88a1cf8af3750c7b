"""Waiting for a condition: the one polling helper of the project's tests
and tools (the standard library only, so the admin tools can use it too)."""
import socket
import time


def wait_until(predicate, timeout, interval=0.05):
    """Call ``predicate`` until it returns something true (returned) or
    ``timeout`` seconds pass (None)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)


def wait_for_port(port, host='127.0.0.1', timeout=10):
    def listening():
        try:
            socket.create_connection((host, port), timeout=0.2).close()
            return True
        except OSError:
            return False
    if not wait_until(listening, timeout):
        raise RuntimeError(f'nothing listens on {host}:{port}')
