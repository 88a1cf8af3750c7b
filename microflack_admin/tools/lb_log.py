"""The load balancer's log ($MF_HOME/logs/lb.log): HAProxy writes a line
there for every failed or aborted request (lb_config: ``option httplog``,
``dontlog-normal``), among the watcher's and HAProxy's own messages."""
from pathlib import Path


def size(path):
    """Where the log ends now (0 if there is none yet)."""
    path = Path(path)
    return path.stat().st_size if path.exists() else 0


def failed_requests(path, offset=0, last=20):
    """The last ``last`` request lines written after ``offset``."""
    path = Path(path)
    if not path.exists():
        return []
    with path.open('rb') as file:
        file.seek(offset)
        text = file.read().decode('utf-8', 'replace')
    return [line for line in text.splitlines() if ' HTTP/1.1"' in line][-last:]
