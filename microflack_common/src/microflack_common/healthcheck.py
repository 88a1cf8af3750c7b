"""``python -m microflack_common.healthcheck``: exit 0 when this instance
answers ``GET /health`` with 200, 1 otherwise.

The Docker images' HEALTHCHECK runs it: images carry no curl, and the
instance's address is only known at run time (SERVICE_ADDRESS).
"""
import http.client
import os
import sys
import urllib.request

DEFAULT_ADDRESS = '127.0.0.1:5000'
TIMEOUT_SECONDS = 3


def check(address, timeout=TIMEOUT_SECONDS):
    """True when ``http://<address>/health`` answers 200 in time."""
    try:
        with urllib.request.urlopen(f'http://{address}/health',
                                    timeout=timeout) as response:
            return response.status == 200
    except (OSError, ValueError, http.client.HTTPException):
        # URLError and timeouts are OSErrors; a bad address is a ValueError
        # or an InvalidURL, a garbled answer another HTTPException.
        return False


def main():
    address = os.environ.get('SERVICE_ADDRESS') or DEFAULT_ADDRESS
    if check(address):
        return 0
    print(f'healthcheck: no healthy answer from http://{address}/health',
          file=sys.stderr)
    return 1


if __name__ == '__main__':
    sys.exit(main())
