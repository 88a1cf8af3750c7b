"""Debian's Chromium under Playwright, as the browser tests and the
benchmarks start it: Playwright's own browser download does not work on
these machines, and without the switches below Chromium tries to reach
Google's hosts, which this machine's closed network refuses."""
import os
import subprocess
from pathlib import Path

CHROMIUM = os.environ.get('MF_TEST_CHROMIUM', '/usr/bin/chromium')
CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu',
                 '--disable-background-networking',
                 '--disable-component-update', '--disable-sync',
                 '--no-first-run']


def launch(playwright, ca_cert=None, home=None):
    """A headless Chromium browser (Playwright's ``Browser``). With
    ``ca_cert``, it trusts that certificate authority (a platform's own,
    install/make-tls.sh), as a user who imported it does: in the NSS
    database of ``home``, which it runs with as its HOME."""
    env = None
    if ca_cert is not None:
        nssdb = Path(home) / '.pki' / 'nssdb'
        nssdb.mkdir(parents=True, exist_ok=True)
        subprocess.run(['certutil', '-d', f'sql:{nssdb}', '-N',
                        '--empty-password'], check=True, capture_output=True)
        subprocess.run(['certutil', '-d', f'sql:{nssdb}', '-A', '-t', 'C,,',
                        '-n', 'MicroFlack local CA', '-i', str(ca_cert)],
                       check=True, capture_output=True)
        env = {**os.environ, 'HOME': str(home)}
    return playwright.chromium.launch(executable_path=CHROMIUM,
                                      args=CHROMIUM_ARGS, headless=True,
                                      env=env)
