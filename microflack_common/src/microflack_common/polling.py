"""Waiting for a condition: the project's one polling loop, for its tests
and tools (the standard library only: the admin tools, whose virtualenv
holds no microflack_common, load it from the source tree)."""
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


def seconds_until(predicate, timeout, interval=0.01):
    """Seconds until ``predicate`` returned something true, or None when
    ``timeout`` seconds passed first: for tests and benchmarks that
    measure how long a change took."""
    started = time.monotonic()
    if wait_until(predicate, timeout, interval) is None:
        return None
    return time.monotonic() - started
