"""The README reads top-down for a newcomer, and every setting a script or
a service reads is listed in it."""
import re

from mfplatform import ADMIN, ROOT

README = ROOT / 'README.md'
# What a newcomer needs, in this order (issue 16).
SECTIONS = [
    'What it is', 'Quick start', 'Using the platform', 'Developing a service',
    'Operating it', 'Layout', 'Environment', 'Measured', 'Limits and choices',
]
# Read by the scripts but not the platform's settings: the user's own.
NOT_SETTINGS = {'HOME', 'PATH', 'XDG_CACHE_HOME'}

PYTHON_READS = re.compile(
    r"(?:env_(?:str|int|float|bool)\(|environ\.get\(|environ\[|getenv\()"
    r"'([A-Z][A-Z0-9_]+)'")
SHELL_READS = re.compile(r'\$\{([A-Z][A-Z0-9_]*):[-=]')


def headings(text, level):
    return re.findall(rf'^{"#" * level} (.+)$', text, flags=re.M)


def python_sources():
    for path in ROOT.glob('microflack_*/**/*.py'):
        parts = path.relative_to(ROOT).parts
        if {'tests', 'node_modules', 'build', 'migrations'} & set(parts) \
                or '.test-home' in parts:
            continue
        yield path


def shell_sources():
    yield ADMIN / 'mfvars'
    yield ADMIN / 'tools' / 'run-instance'
    for folder in ('bin', 'lib', 'install'):
        for path in (ADMIN / folder).rglob('*'):
            if path.is_file() and path.suffix not in {'.py', '.yaml', '.md',
                                                        '.conf', '.cfg'}:
                yield path
    yield from ROOT.glob('microflack_*/boot.sh')
    yield from ROOT.glob('microflack_*/build.sh')


def settings_read():
    names = {}
    for path in python_sources():
        for name in PYTHON_READS.findall(path.read_text()):
            names.setdefault(name, path)
    for path in shell_sources():
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        for name in SHELL_READS.findall(text):
            names.setdefault(name, path)
    return {name: path for name, path in names.items()
            if name not in NOT_SETTINGS}


def test_sections_in_a_newcomers_order():
    found = [heading for heading in headings(README.read_text(), 2)
             if heading in SECTIONS]
    assert found == SECTIONS


def environment_rows():
    """The variable names of the Environment section's tables (a row may
    name several)."""
    section = README.read_text().split('\n## Environment\n', 1)[1]
    section = section.split('\n## ', 1)[0]
    names = []
    for line in section.splitlines():
        if line.startswith('| `'):
            names += re.findall(r'`([A-Z][A-Z0-9_]+)`', line.split(' | ')[0])
    return names


def test_every_setting_is_listed_once():
    read = settings_read()
    # The reading side finds what it must (the patterns still match).
    assert {'ETCD', 'GUNICORN_THREADS', 'MICROFLACK_RUNTIME', 'LB_PORT',
            'WATCHDOG_TIMEOUT', 'SOCKETIO_STOP_TIMEOUT'} <= set(read)
    rows = environment_rows()
    missing = {name: str(path.relative_to(ROOT))
               for name, path in read.items() if name not in rows}
    assert missing == {}
    assert sorted(name for name in set(rows) if rows.count(name) > 1) == []
