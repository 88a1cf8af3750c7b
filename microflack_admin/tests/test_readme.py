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
            if path.is_file() and not path.suffix in {'.py', '.yaml', '.md',
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


def test_every_setting_is_listed():
    documented = README.read_text() + (
        ADMIN / 'install' / 'kubernetes' / 'README.md').read_text()
    read = settings_read()
    assert {'ETCD', 'GUNICORN_THREADS', 'MICROFLACK_RUNTIME'} <= set(read)
    missing = {name: str(path.relative_to(ROOT))
               for name, path in read.items()
               if not re.search(rf'`{name}`', documented)}
    assert missing == {}
