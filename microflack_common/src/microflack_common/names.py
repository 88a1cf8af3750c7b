"""What the names of services, builds and instances may contain.

One rule each, for every party that names or reads them: the services
(their registration), the load balancer (which skips a registry entry
that breaks them) and the admin scripts, which ask this file before they
build or start anything::

    python3 .../microflack_common/names.py tag 1.1.0-rc1

prints nothing and exits 0 for a good name; for a bad one it prints why
on stderr and exits 1. It needs nothing but the standard library, so any
python3 runs it before anything is installed.

A build's tag becomes a release folder, a Docker image tag
(``[A-Za-z0-9_.-]``, up to 128, not starting with ``.`` or ``-``) and part
of an instance name, ``<service>_v<tag>_<host>_<port>``. Its rule is the
narrowest of those: no ``_``, the separator of an instance name's parts,
and ``latest`` is the Docker runtime's pointer to the newest build.
"""
import re
import sys

SERVICE_PATTERN = re.compile(r'[a-z][a-z0-9_-]{0,31}')
TAG_PATTERN = re.compile(r'[A-Za-z0-9][A-Za-z0-9.-]{0,31}')
INSTANCE_PATTERN = re.compile(r'[A-Za-z0-9][A-Za-z0-9_.-]{0,62}')
RESERVED_TAGS = ('latest',)

# kind: (pattern, what it is called, the rule in words)
RULES = {
    'service': (SERVICE_PATTERN, 'service name',
                'lower-case letters, digits, "_" and "-", starting with a '
                'letter, at most 32 characters'),
    'tag': (TAG_PATTERN, 'tag',
            'letters, digits, "." and "-", starting with a letter or digit, '
            'at most 32 characters (e.g. 1.1.0-rc1)'),
    'instance': (INSTANCE_PATTERN, 'instance name',
                 'letters, digits, "_", "." and "-", starting with a letter '
                 'or digit, at most 63 characters'),
}


def problem(kind, name):
    """Why ``name`` is no good name of this kind (None when it is)."""
    pattern, called, rule = RULES[kind]
    if not isinstance(name, str) or not pattern.fullmatch(name):
        return f'bad {called} {name!r}: {rule}'
    if kind == 'tag' and name in RESERVED_TAGS:
        return f'bad tag {name!r}: it names the newest build'
    return None


def valid(kind, name):
    return problem(kind, name) is None


def main(argv):
    if len(argv) != 2 or argv[0] not in RULES:
        print(f'usage: names.py {"|".join(RULES)} <name>', file=sys.stderr)
        return 2
    message = problem(*argv)
    if message:
        print(message, file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
