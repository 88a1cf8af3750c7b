"""Debian's Chromium under Playwright, as the browser tests and the
benchmarks start it: Playwright's own browser download does not work on
these machines, and without the switches below Chromium tries to reach
Google's hosts, which this machine's closed network refuses."""
import os

CHROMIUM = os.environ.get('MF_TEST_CHROMIUM', '/usr/bin/chromium')
CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu',
                 '--disable-background-networking',
                 '--disable-component-update', '--disable-sync',
                 '--no-first-run']


def launch(playwright):
    """A headless Chromium browser (Playwright's ``Browser``)."""
    return playwright.chromium.launch(executable_path=CHROMIUM,
                                      args=CHROMIUM_ARGS, headless=True)
