"""Small helpers shared by the services."""
import time


def timestamp():
    """The current time as integer Unix seconds, the platform's time format."""
    return int(time.time())
