"""Loopback ports for tests and benchmarks: free ones, and waiting for a
listener (the standard library only, like :mod:`.polling`)."""
import socket

from .polling import wait_until


def free_port(host='127.0.0.1'):
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def free_port_pair(host='127.0.0.1'):
    """Two consecutive free ports (etcd's client and peer ports)."""
    for _ in range(50):
        port = free_port(host)
        try:
            with socket.socket() as sock:
                sock.bind((host, port + 1))
            return port
        except OSError:
            continue
    raise RuntimeError('no two consecutive free ports')


def wait_for_port(port, host='127.0.0.1', timeout=10):
    def listening():
        try:
            socket.create_connection((host, port), timeout=0.2).close()
            return True
        except OSError:
            return False
    if not wait_until(listening, timeout):
        raise RuntimeError(f'nothing listens on {host}:{port}')
