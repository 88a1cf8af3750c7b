"""gunicorn settings; gunicorn reads this file from its working directory."""


def worker_exit(server, worker):
    """A worker is stopping (SIGTERM, rolling upgrade): abandon the queued
    link previews and give the running ones a few seconds, rather than let
    the interpreter wait for the whole queue."""
    app = getattr(worker, 'wsgi', None)
    if app is not None:
        import tasks
        tasks.shutdown(timeout=10, app=app)
