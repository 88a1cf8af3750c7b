"""Real servers on loopback for integration tests: free ports, a private
etcd, a WSGI app served from a thread; gunicorn's master and worker
objects, not running (for :mod:`microflack_common.gunicorn_patches`)."""
import os
import shutil
import subprocess
import threading
from contextlib import contextmanager

from ..loopback import free_port, free_port_pair, wait_for_port
from ..polling import wait_until

__all__ = ['EtcdServer', 'free_port', 'free_port_pair', 'gunicorn_arbiter',
           'gunicorn_worker', 'serving', 'wait_for_port']


class EtcdServer:
    """A private single-node etcd on loopback, with its data in
    ``data_dir``; can be stopped and started again. It serves the v3 API
    only: the v2 key API is off, as on every supported etcd."""

    def __init__(self, data_dir, binary=None, enable_v2=False):
        self.binary = binary or shutil.which('etcd') or (
            '/usr/bin/etcd' if os.access('/usr/bin/etcd', os.X_OK) else None)
        if self.binary is None:
            raise RuntimeError('etcd is not installed (setup-host.sh '
                               'installs etcd-server)')
        self.data_dir = str(data_dir)
        self.port, self.peer_port = free_port(), free_port()
        self.url = f'http://127.0.0.1:{self.port}'
        self.process = None
        # Only to test moving a platform off the v2 API (etcd 3.4 has it).
        self.enable_v2 = enable_v2

    def start(self, timeout=15):
        import urllib3
        peer = f'http://127.0.0.1:{self.peer_port}'
        self.process = subprocess.Popen(
            [self.binary, '--name', 'test',
             *(['--enable-v2=true'] if self.enable_v2 else []),
             '--data-dir', self.data_dir,
             '--listen-client-urls', self.url,
             '--advertise-client-urls', self.url,
             '--listen-peer-urls', peer,
             '--initial-advertise-peer-urls', peer,
             '--initial-cluster', f'test={peer}'],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        http = urllib3.PoolManager(retries=False)

        def ready():
            try:
                return http.request('POST', self.url + '/v3/kv/range',
                                    body=b'{"key": "AA=="}',
                                    timeout=1).status == 200
            except urllib3.exceptions.HTTPError:
                return False
        if not wait_until(ready, timeout):
            self.stop()
            raise RuntimeError('etcd did not start')
        return self

    def stop(self, timeout=10):
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


@contextmanager
def serving(app):
    """Serve a WSGI ``app`` (threaded) on 127.0.0.1; yields its URL."""
    from werkzeug.serving import make_server

    server = make_server('127.0.0.1', 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f'http://127.0.0.1:{server.server_port}'
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def gunicorn_arbiter(**settings):
    """A master (Arbiter) of the installed gunicorn with ``settings``, set
    up as gunicorn sets it up, but not running."""
    from gunicorn.app.base import BaseApplication
    from gunicorn.arbiter import Arbiter

    class Application(BaseApplication):
        def load_config(self):
            for name, value in settings.items():
                self.cfg.set(name, value)

        def load(self):
            return lambda environ, start_response: []

    return Arbiter(Application())


def gunicorn_worker(arbiter):
    """A worker of ``arbiter``, as the master makes it before forking (the
    base class: importing some worker classes monkey patches the process)."""
    from gunicorn.workers.base import Worker

    return Worker(1, os.getpid(), [], arbiter.app, arbiter.timeout,
                  arbiter.cfg, arbiter.log)
