"""Checking what clients send: every problem becomes a 400 JSON error."""
from flask import abort, request

# Beyond this an integer cannot be stored or compared by every database.
MAX_INT = 2 ** 53
# Ids are INT columns (signed, 32 bits) in MariaDB: a larger number names
# no row.
MAX_ID = 2 ** 31 - 1


def storable_id(value):
    """Whether ``value`` is an id a row can have (1..MAX_ID)."""
    return 0 < value <= MAX_ID


def json_object():
    """The request body as a dict; 400 unless it is a JSON object."""
    try:
        data = request.get_json(silent=True)
    except RecursionError:
        # Nested past the interpreter's recursion limit: not a ValueError,
        # so get_json(silent=True) lets it through.
        abort(400, 'the request body is nested too deeply')
    if not isinstance(data, dict):
        abort(400, 'the request body must be a JSON object')
    return data


def string_field(data, name, required=True, max_length=None,
                 strip=False):
    """A non-empty string field of a JSON object (None when optional and
    absent)."""
    if name not in data or data[name] is None:
        if required:
            abort(400, f'{name} is required')
        return None
    value = data[name]
    if not isinstance(value, str):
        abort(400, f'{name} must be a string')
    try:
        value.encode('utf-8')
    except UnicodeEncodeError:      # lone surrogates: valid JSON, not text
        abort(400, f'{name} is not valid text')
    if strip:
        value = value.strip()
    if not value:
        abort(400, f'{name} must not be empty')
    if max_length is not None and len(value) > max_length:
        abort(400, f'{name} must be at most {max_length} characters')
    return value


def int_arg(name, default=None):
    """An integer query string argument; 400 when it is not a number."""
    value = request.args.get(name)
    if value is None or value == '':
        return default
    try:
        number = int(value)
    except ValueError:
        abort(400, f'{name} must be an integer')
    if abs(number) > MAX_INT:
        abort(400, f'{name} is out of range')
    return number


def bool_arg(name):
    """A 0/1 (or true/false) query string argument; None when absent."""
    value = request.args.get(name)
    if value is None or value == '':
        return None
    lowered = value.strip().lower()
    if lowered in ('1', 'true', 'yes'):
        return True
    if lowered in ('0', 'false', 'no'):
        return False
    abort(400, f'{name} must be 0 or 1')
