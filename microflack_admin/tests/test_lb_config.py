"""The renderer of haproxy.cfg (tools/lb_config.py): every routing rule,
every kind of malformed registry entry, each result checked by the real
``haproxy -c``; what its compression does, through a real HAProxy."""
import copy
import gzip
import json
import socket
import subprocess
import time
from dataclasses import replace
from urllib.parse import urlencode

import pytest
import urllib3
from lb_config import (
    BALANCE_ALGORITHMS,
    COMPRESSION,
    JSON_ERRORS,
    MAX_BODY,
    Settings,
    filter_server_state,
    parse_address,
    render,
    server_definitions,
    stale_servers,
)

from conftest import need_binary
from microflack_common.loopback import free_port
from microflack_common.testing import wait_until

GOOD = {'location': '/api/good', 'upstream': {'good_1': '127.0.0.1:5001'}}


@pytest.fixture
def settings(tmp_path):
    return Settings(stats_user='admin', stats_password='pa$$#word',
                    stats_socket=str(tmp_path / 'admin.sock'),
                    state_file=str(tmp_path / 'server-state'),
                    bind='127.0.0.1', port=8080)


@pytest.fixture
def haproxy_check(tmp_path):
    """haproxy_check(text): run ``haproxy -c`` on the text, fail if it is
    rejected."""
    binary = need_binary('haproxy')

    def check(text):
        path = tmp_path / 'check.cfg'
        path.write_text(text)
        result = subprocess.run([binary, '-c', '-f', str(path)],
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stdout + result.stderr + text
    return check


def section(text, header):
    """The lines of one section (``backend x_backend``, ``frontend http``)."""
    lines = text.splitlines()
    start = lines.index(header)
    body = []
    for line in lines[start + 1:]:
        if line and not line[0].isspace() and not line.startswith('#'):
            break
        body.append(line.strip())
    return [line for line in body if line and not line.startswith('#')]


SAMPLE = {
    'ui': {'location': '/', 'upstream': {'ui_1': '127.0.0.1:5000'}},
    'users': {'location': '/api/users',
              'backend': {'balance': 'roundrobin'},
              'upstream': {'users_1': '127.0.0.1:5001',
                           'users_2': '127.0.0.1:5002'},
              'weight': {'users_2': '256'}},
    'api': {'location': '/api', 'upstream': {'api_1': '127.0.0.1:5003'}},
    'socketio': {'location': '/socket.io', 'backend': {'balance': 'source'},
                 'upstream': {'socketio_1': 'localhost:5004'}},
}


def test_sample_tree(settings, haproxy_check):
    rendered = render(SAMPLE, settings)
    assert rendered.warnings == []
    text = rendered.text
    frontend = section(text, 'frontend http')
    assert 'bind 127.0.0.1:8080' in frontend
    routing = [line for line in frontend
               if line.startswith(('acl', 'use_backend', 'default_backend'))]
    assert routing == [
        # Longest locations first (/api/users before /api), then in order.
        'acl is_users path /api/users',
        'acl is_users path_beg /api/users/',
        'use_backend users_backend if is_users',
        'acl is_socketio path /socket.io',
        'acl is_socketio path_beg /socket.io/',
        'use_backend socketio_backend if is_socketio',
        'acl is_api path /api',
        'acl is_api path_beg /api/',
        'use_backend api_backend if is_api',
        'default_backend ui_backend',
    ]
    assert section(text, 'backend users_backend') == [
        'balance roundrobin',
        'server users_1 127.0.0.1:5001 check',
        'server users_2 127.0.0.1:5002 check weight 256',
    ]
    assert section(text, 'backend socketio_backend') == [
        'balance source', 'server socketio_1 localhost:5004 check']
    assert section(text, 'backend ui_backend') == [
        'balance roundrobin', 'server ui_1 127.0.0.1:5000 check']
    haproxy_check(text)


def test_a_location_does_not_capture_longer_names(settings):
    text = render(SAMPLE, settings).text
    # /api/users matches /api/users and /api/users/..., never /api/usersX.
    assert 'path_beg /api/users\n' not in text
    assert 'path_beg /api/users/\n' in text


def test_defaults(settings, haproxy_check):
    text = render({}, settings).text
    glob = section(text, 'global')
    defaults = section(text, 'defaults')
    frontend = section(text, 'frontend http')
    assert f'stats socket {settings.stats_socket} mode 600 level admin' \
        in glob
    assert f'server-state-file {settings.state_file}' in glob
    assert 'nbthread 1' in glob
    assert 'log stdout format raw local0' in glob
    for line in ('mode http', 'timeout connect 2s', 'timeout client 60s',
                 'timeout server 60s', 'timeout tunnel 1h',
                 'option redispatch 1', 'retries 3',
                 'retry-on all-retryable-errors',
                 'option httpchk GET /health',
                 'load-server-state-from-file global',
                 'option http-keep-alive', 'http-reuse never',
                 'timeout http-keep-alive 10s', 'log global',
                 'option httplog', 'option dontlog-normal',
                 'option http-buffer-request', 'timeout http-request 10s'):
        assert line in defaults
    assert 'tune.bufsize 65536' in glob
    # A stopping instance drains its requests: they are not cut when its
    # health checks fail.
    assert 'shutdown-sessions' not in text
    for line in ('stick-table type ip size 100k expire 60s store conn_cur',
                 'tcp-request connection track-sc0 src',
                 'tcp-request connection reject if { sc0_conn_cur gt 500 }'):
        assert line in frontend
    default_server = next(line for line in defaults
                          if line.startswith('default-server'))
    for word in ('inter 1s', 'fastinter 500ms', 'fall 2', 'rise 1'):
        assert word in default_server
    assert 'http-request disable-l7-retry if !{ method GET HEAD OPTIONS ' \
        'PUT DELETE }' in frontend
    for line in COMPRESSION:
        assert line in frontend
    for status, message in JSON_ERRORS.items():
        assert f'http-error status {status} content-type application/json ' \
            f'string \'{{"error": "{message}"}}\'' in defaults
    assert 'http-request deny deny_status 400 if { req.ver 1.1 } ' \
        '!{ req.hdr(host) -m found }' in frontend
    assert 'http-response del-header Server' in frontend
    assert 'http-request deny deny_status 413 if { req.hdr_val(content-length) ' \
        f'gt {MAX_BODY} }}' in frontend
    assert 'stats uri /stats' in frontend
    assert "stats auth 'admin:pa$$#word'" in frontend
    assert not [line for line in frontend if line.startswith('acl')]
    assert 'default_backend' not in text
    haproxy_check(text)


def test_threads(settings, haproxy_check):
    text = render({}, replace(settings, threads=4)).text
    assert 'nbthread 4' in section(text, 'global')
    haproxy_check(text)


def test_gunicorn_outlasts_an_idle_client_connection():
    """A server connection belongs to one client connection: gunicorn must
    keep it open longer than HAProxy keeps an idle client connection, or it
    could close it just as the client's next request goes out on it."""
    from microflack_common import gunicorn_config
    assert gunicorn_config.keepalive > 10


@pytest.mark.parametrize('algorithm', BALANCE_ALGORITHMS)
def test_balance_algorithms(settings, algorithm):
    tree = {'svc': dict(GOOD, backend={'balance': algorithm})}
    rendered = render(tree, settings)
    assert rendered.warnings == []
    assert f'balance {algorithm}' in section(rendered.text,
                                             'backend svc_backend')


def test_unsupported_backend_options_are_skipped(settings, haproxy_check):
    tree = {'svc': dict(GOOD, backend={'balance': 'random; rm -rf',
                                       'max-conn': '10',
                                       'http-request': 'deny'})}
    rendered = render(tree, settings)
    assert section(rendered.text, 'backend svc_backend') == [
        'balance roundrobin', 'server good_1 127.0.0.1:5001 check']
    assert len(rendered.warnings) == 3
    assert any('backend/balance' in w for w in rendered.warnings)
    assert any('backend/max-conn' in w for w in rendered.warnings)
    haproxy_check(rendered.text)


def test_maxconn_and_timeout_server_of_a_backend(settings, haproxy_check):
    """What a service registers: each server gets at most maxconn
    requests at once (the rest queue in HAProxy), and the backend waits
    timeout_server seconds for an answer."""
    tree = {'svc': dict(GOOD, backend={'maxconn': '8',
                                       'timeout_server': '10'})}
    rendered = render(tree, settings)
    assert rendered.warnings == []
    backend = section(rendered.text, 'backend svc_backend')
    assert 'timeout server 10s' in backend
    assert 'default-server maxconn 8' in backend
    haproxy_check(rendered.text)


@pytest.mark.parametrize('option, value', [
    ('maxconn', '0'), ('maxconn', '10001'), ('maxconn', '-1'),
    ('maxconn', '8 check'), ('maxconn', ''), ('maxconn', '٨'),
    ('timeout_server', '0'), ('timeout_server', '10s'),
    ('timeout_server', '3601'), ('timeout_server', '1e3'),
])
def test_bad_backend_option_values_are_ignored(settings, haproxy_check,
                                                option, value):
    rendered = render({'svc': dict(GOOD, backend={option: value})}, settings)
    assert rendered.warnings and f'backend/{option}' in rendered.warnings[0]
    backend = section(rendered.text, 'backend svc_backend')
    assert not [line for line in backend if 'maxconn' in line
                or line.startswith('timeout')]
    haproxy_check(rendered.text)


def test_client_maxconn(settings, haproxy_check):
    text = render({}, replace(settings, client_maxconn=40)).text
    assert 'tcp-request connection reject if { sc0_conn_cur gt 40 }' in \
        section(text, 'frontend http')
    haproxy_check(text)


def test_rate_limits_by_default(settings, haproxy_check):
    """Issue 19, finding 6: logins and registrations per client address,
    posts per token, each with its own table."""
    text = render({}, settings).text
    frontend = '\n'.join(section(text, 'frontend http'))
    for table, key, request, limit in [
            ('rate_logins', 'src', 'POST } { path /api/tokens', 30),
            ('rate_registrations', 'src', 'POST } { path /api/users', 10),
            ('rate_posts', 'req.fhdr(authorization),sha1',
             'POST } { path /api/messages', 120)]:
        assert f'track-sc1 {key} table {table} if {{ method {request} }}' \
            in frontend
        assert f'{{ method {request} }}' in frontend
        assert f'{{ sc1_http_req_rate gt {limit} }}' in frontend
        assert 'http_req_rate(60s)' in '\n'.join(section(text,
                                                         f'backend {table}'))
    assert 'hdr Retry-After 60' in frontend
    haproxy_check(text)


def test_a_rate_limit_of_0_is_off(settings, haproxy_check):
    text = render(SAMPLE, replace(settings, logins_per_minute=0,
                                  posts_per_minute=0)).text
    assert 'rate_logins' not in text and 'rate_posts' not in text
    assert 'track-sc1 src table rate_registrations' in text
    haproxy_check(text)
    text = render(SAMPLE, replace(settings, logins_per_minute=0,
                                  registrations_per_minute=0,
                                  posts_per_minute=0)).text
    assert 'track-sc1' not in text and 'http_req_rate' not in text
    haproxy_check(text)


def https_settings(settings, tls_home, **changes):
    return replace(settings, https_port=8443,
                   tls_cert=str(tls_home / 'tls' / 'lb.pem'), **changes)


def test_https(settings, haproxy_check, tls_home):
    """Issue 19, TLS: HTTPS beside HTTP; with the redirect, plain HTTP from
    outside goes to HTTPS (on its port) and HTTPS answers carry HSTS."""
    text = render(SAMPLE, https_settings(settings, tls_home)).text
    frontend = section(text, 'frontend http')
    assert f'bind 127.0.0.1:8443 ssl crt {tls_home}/tls/lb.pem alpn ' \
        'http/1.1' in frontend
    assert 'http-request set-header X-Forwarded-Proto https if { ssl_fc }' \
        in frontend
    assert not any('redirect' in line or 'Strict-Transport' in line
                   for line in frontend)
    haproxy_check(text)
    text = render(SAMPLE, https_settings(
        settings, tls_home, https_redirect=True,
        internal_sources=['127.0.0.1', '127.0.0.128/25'])).text
    frontend = section(text, 'frontend http')
    assert 'http-request redirect location https://%[req.hdr(host),' \
        'field(1,:)]:8443%[pathq] code 308 if !{ ssl_fc } ' \
        '!{ src 127.0.0.1 127.0.0.128/25 }' in frontend
    assert 'http-response set-header Strict-Transport-Security ' \
        '"max-age=15552000" if { ssl_fc }' in frontend
    haproxy_check(text)
    # On 443 the redirect names no port.
    text = render(SAMPLE, replace(https_settings(
        settings, tls_home, https_redirect=True), https_port=443)).text
    assert 'https://%[req.hdr(host),field(1,:)]%[pathq]' in text


@pytest.mark.parametrize('changes', [
    {'https_port': 8080}, {'https_port': 70000}, {'https_port': '443'},
    {'https_port': 443, 'tls_cert': ''},
    {'https_port': 443, 'tls_cert': 'relative.pem'},
    {'https_redirect': True},
    {'https_port': 443, 'tls_cert': '/a.pem', 'https_redirect': 'yes'},
    {'internal_sources': '127.0.0.1'}, {'internal_sources': ['nowhere']},
    {'internal_sources': ['127.0.0.1 || 1']},
])
def test_bad_https_settings_are_refused(settings, changes):
    values = dict(settings.__dict__, **changes)
    with pytest.raises(ValueError):
        Settings(**values)


def test_service_without_upstream_keeps_its_route(settings, haproxy_check):
    tree = {'ui': {'location': '/', 'upstream': {'ui_1': '127.0.0.1:5000'}},
            'messages': {'location': '/api/messages'},
            'tokens': {'location': '/api/tokens', 'upstream': {}}}
    rendered = render(tree, settings)
    assert rendered.warnings == []
    text = rendered.text
    for name in ('messages', 'tokens'):
        assert f'use_backend {name}_backend if is_{name}' in text
        assert section(text, f'backend {name}_backend') == [
            'balance roundrobin']
    assert '503' in text  # the comment says why the empty backend stays
    haproxy_check(text)


@pytest.mark.parametrize('weight, expected', [
    ('1', ' weight 1'), ('100', ' weight 100'), ('256', ' weight 256'),
    ('0', ''), ('257', ''), ('-1', ''), ('abc', ''), ('', ''),
    ('10 backup', ''), ('1e2', ''), ('٣', ''), ({'x': '1'}, '')])
def test_weights(settings, weight, expected):
    tree = {'svc': dict(GOOD, weight={'good_1': weight})}
    rendered = render(tree, settings)
    assert section(rendered.text, 'backend svc_backend')[1] == \
        f'server good_1 127.0.0.1:5001 check{expected}'
    assert bool(rendered.warnings) == (expected == '')


def test_weight_of_an_unknown_instance_is_ignored(settings):
    tree = {'svc': dict(GOOD, weight={'other': '5'})}
    rendered = render(tree, settings)
    assert rendered.warnings == []
    assert 'weight' not in section(rendered.text, 'backend svc_backend')[1]


def test_trailing_slash_of_a_location(settings):
    tree = {'svc': dict(GOOD, location='/api/good/')}
    text = render(tree, settings).text
    assert 'acl is_svc path /api/good\n' in text
    assert 'acl is_svc path_beg /api/good/\n' in text


def test_duplicate_locations_are_resolved_deterministically(settings):
    live = {'location': '/api/x', 'upstream': {'live_1': '127.0.0.1:5001'}}
    stale = {'location': '/api/x/'}
    tree = {'aaa': stale, 'zzz': live, 'mmm': dict(stale)}
    rendered = render(tree, settings)
    # The service with instances wins over stale entries, whatever the
    # names; the others are skipped with a warning.
    assert 'use_backend zzz_backend if is_zzz' in rendered.text
    assert 'aaa_backend' not in rendered.text
    assert 'mmm_backend' not in rendered.text
    assert len(rendered.warnings) == 2
    reordered = dict(reversed(list(tree.items())))
    assert render(reordered, settings) == rendered
    # Among equals, the first name wins.
    tree = {'bbb': dict(GOOD), 'aaa': dict(GOOD)}
    text = render(tree, settings).text
    assert 'aaa_backend' in text and 'bbb_backend' not in text


def test_two_default_services(settings):
    tree = {'ui': {'location': '/', 'upstream': {'a': '127.0.0.1:1'}},
            'web': {'location': '/', 'upstream': {'b': '127.0.0.1:2'}}}
    rendered = render(tree, settings)
    assert rendered.text.count('default_backend') == 1
    assert 'default_backend ui_backend' in rendered.text
    assert len(rendered.warnings) == 1


def test_render_is_pure(settings):
    tree = copy.deepcopy(SAMPLE)
    first = render(tree, settings)
    assert tree == SAMPLE
    assert render(tree, settings) == first


@pytest.mark.parametrize('tree', [None, {}, 'junk', {'svc': 'junk'},
                                  {'svc': {}}, {'svc': {'location': None}}])
def test_empty_or_junk_trees_render_a_valid_config(settings, haproxy_check,
                                                   tree):
    rendered = render(tree, settings)
    # No service's backend (the rate limits' tables are backends too).
    assert '_backend' not in rendered.text
    haproxy_check(rendered.text)


MALFORMED = [
    # (description, tree merged with a good service, text that must not
    # appear in the config)
    ('uppercase service name', {'Bad': GOOD}, 'Bad_backend'),
    ('service name with a space', {'a b': GOOD}, 'a b'),
    ('service name with a dot', {'a.b': GOOD}, 'a.b_backend'),
    ('service name too long', {'s' * 33: GOOD}, 's' * 33),
    ('service name starting with a digit', {'1svc': GOOD}, '1svc'),
    ('service name with a newline', {'svc\n': GOOD}, 'svc\n'),
    ('location without a slash', {'svc': dict(GOOD, location='api')},
     'svc_backend'),
    ('location with a space', {'svc': dict(GOOD, location='/a b')},
     'svc_backend'),
    ('location with a quote', {'svc': dict(GOOD, location="/a'b")},
     'svc_backend'),
    ('location with a hash', {'svc': dict(GOOD, location='/a#b')},
     'svc_backend'),
    ('location with a newline',
     {'svc': dict(GOOD, location='/a\nbackend x')}, 'svc_backend'),
    ('location with a brace', {'svc': dict(GOOD, location='/a}')},
     'svc_backend'),
    ('location with a percent sign', {'svc': dict(GOOD, location='/a%20')},
     'svc_backend'),
    ('location with a double slash', {'svc': dict(GOOD, location='/a//b')},
     'svc_backend'),
    ('location that is a directory', {'svc': dict(GOOD, location={})},
     'svc_backend'),
    ('location shadowed by the stats page',
     {'svc': dict(GOOD, location='/stats/x')}, 'svc_backend'),
    ('location too long', {'svc': dict(GOOD, location='/' + 'a' * 300)},
     'svc_backend'),
    ('no location', {'svc': {'upstream': GOOD['upstream']}}, 'svc_backend'),
    ('service that is a value', {'svc': '/api/svc'}, 'svc_backend'),
    ('upstream that is a value', {'svc': dict(GOOD, upstream='1.2.3.4:5')},
     '1.2.3.4'),
    ('backend that is a value', {'svc': dict(GOOD, backend='source')},
     'balance source'),
    ('weight that is a value', {'svc': dict(GOOD, weight='5')}, 'weight 5'),
]
BAD_INSTANCES = ['-leading-dash', 'a b', 'a;b', 'a\nb', 'a' * 64, 'a/b',
                 'a:b', "a'b", '']
BAD_ADDRESSES = [
    '127.0.0.1', '127.0.0.1:', ':80', '127.0.0.1:0', '127.0.0.1:65536',
    '127.0.0.1:99999999', '127.0.0.1:-1', '127.0.0.1:+80', '127.0.0.1:8O',
    '999.1.1.1:80', '1.2.3:80', '01.2.3.4:80', '[::1]:80', '::1:80',
    'host name:80', 'host_name:80', '-host:80', 'host-:80', 'a..b:80',
    '127.0.0.1:80 backup', '127.0.0.1:80\n', 'ünicode:80', 'h\x00:80',
    '127.0.0.1:٨٠', 'a' * 64 + '.com:80', '', None, {'x': 'y'},
    'unix@/tmp/sock:80', 'ipv4@127.0.0.1:80',
]
for name in BAD_INSTANCES:
    MALFORMED.append((f'instance name {name!r}',
                      {'bad': {'location': '/bad',
                               'upstream': {name: '127.0.0.1:5009'}}},
                      '127.0.0.1:5009'))
for address in BAD_ADDRESSES:
    MALFORMED.append((f'address {address!r}',
                      {'bad': {'location': '/bad',
                               'upstream': {'bad_1': address}}},
                      'bad_1'))


@pytest.mark.parametrize('description, entry, absent', MALFORMED,
                         ids=[case[0] for case in MALFORMED])
def test_malformed_entries_are_skipped(settings, haproxy_check, description,
                                       entry, absent):
    tree = {'good': GOOD, **entry}
    rendered = render(tree, settings)
    assert rendered.warnings, description
    assert absent not in rendered.text
    # The good service is still routed.
    assert 'use_backend good_backend if is_good' in rendered.text
    assert 'server good_1 127.0.0.1:5001 check' in rendered.text
    haproxy_check(rendered.text)


@pytest.mark.parametrize('address, expected', [
    ('127.0.0.1:80', ('127.0.0.1', 80)),
    ('127.0.0.2:65535', ('127.0.0.2', 65535)),
    ('localhost:1', ('localhost', 1)),
    ('Users-1.Example.com:5000', ('users-1.example.com', 5000)),
    ('127.0.0.1:080', ('127.0.0.1', 80)),
])
def test_good_addresses(address, expected):
    assert parse_address(address) == expected


@pytest.mark.parametrize('changes', [
    {'bind': '0.0.0.0 ssl'}, {'bind': 'localhost'}, {'bind': '::1'},
    {'port': 0}, {'port': 70000}, {'port': '80'}, {'port': True},
    {'threads': 0}, {'threads': 65}, {'threads': '2'}, {'threads': True},
    {'client_maxconn': 0}, {'client_maxconn': 100001},
    {'client_maxconn': '5'}, {'client_maxconn': True},
    {'logins_per_minute': -1}, {'registrations_per_minute': 100001},
    {'posts_per_minute': '5'}, {'posts_per_minute': True},
    {'logins_per_minute': 1.5},
    {'stats_user': ''}, {'stats_user': 'a:b'}, {'stats_user': 'a b'},
    {'stats_password': ''}, {'stats_password': "it's"},
    {'stats_password': 'a b'}, {'stats_password': 'a\nb'},
    {'stats_socket': 'relative.sock'}, {'state_file': '/tmp/a b'},
])
def test_bad_settings_are_refused(settings, changes):
    values = dict(settings.__dict__, **changes)
    with pytest.raises(ValueError):
        Settings(**values)


STATE = '''1
# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state \
srv_uweight srv_iweight srv_time_since_last_change srv_check_status \
srv_check_result srv_check_health srv_check_state srv_agent_state \
bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl \
srv_check_port srv_check_addr srv_agent_addr srv_agent_port
3 a_backend 1 a_1 127.0.0.1 0 0 1 1 5 8 2 0 6 0 0 0 - 5001 - 0 0 - - 0
3 a_backend 2 a_2 127.0.0.1 2 0 1 1 5 8 2 0 6 0 0 0 - 5002 - 0 0 - - 0
4 b_backend 1 b_1 127.0.0.1 0 0 1 1 5 8 2 0 6 0 0 0 - 5003 - 0 0 - - 0

'''


def test_stale_servers_compares_what_haproxy_runs(settings):
    """What HAProxy runs (STATE: a_1, a_2 and b_1, weight 1) against a
    configuration: a server missing, one too many, another port or
    another weight each count; the same servers, none."""
    def config(upstream, weights=None):
        tree = {'a': {'location': '/a', 'upstream': upstream},
                'b': {'location': '/b',
                      'upstream': {'b_1': '127.0.0.1:5003'}}}
        if weights:
            tree['a']['weight'] = weights
        return render(tree, settings).text
    same = {'a_1': '127.0.0.1:5001', 'a_2': '127.0.0.1:5002'}
    assert stale_servers(config(same), STATE) == []
    assert stale_servers(config({'a_1': '127.0.0.1:5001'}), STATE) == [
        ('a_backend', 'a_2')]
    assert stale_servers(config({**same, 'a_3': '127.0.0.1:5009'}),
                         STATE) == [('a_backend', 'a_3')]
    assert stale_servers(config({**same, 'a_2': '127.0.0.1:6002'}),
                         STATE) == [('a_backend', 'a_2')]
    assert stale_servers(config(same, {'a_1': '100'}), STATE) == [
        ('a_backend', 'a_1')]
    # A state HAProxy did not write: every server of the text is stale.
    assert stale_servers(config(same), 'garbage') == [
        ('a_backend', 'a_1'), ('a_backend', 'a_2'), ('b_backend', 'b_1')]


def test_server_state_is_kept_only_for_unchanged_servers(settings):
    old = render({'a': {'location': '/a', 'upstream': {
        'a_1': '127.0.0.1:5001', 'a_2': '127.0.0.1:5002'}},
        'b': {'location': '/b', 'upstream': {'b_1': '127.0.0.1:5003'}}},
        settings).text
    # a_1 unchanged, a_2 moved to another port, b_1 gone, c new.
    new = render({'a': {'location': '/a', 'upstream': {
        'a_1': '127.0.0.1:5001', 'a_2': '127.0.0.1:6002'}},
        'c': {'location': '/c', 'upstream': {'c_1': '127.0.0.1:5004'}}},
        settings).text
    assert server_definitions(new)[('a_backend', 'a_2')] == \
        '127.0.0.1:6002 check'
    kept = filter_server_state(STATE, old, new).splitlines()
    assert kept[0] == '1'
    assert kept[1].startswith('# be_id')
    assert [line.split()[3] for line in kept[2:]] == ['a_1']


def test_server_state_must_hold_the_configured_address(settings):
    text = render({'a': {'location': '/a', 'upstream': {
        'a_1': '127.0.0.2:5001', 'a_2': '127.0.0.1:5009'}}}, settings).text
    # a_1: same port, other address; a_2: other port.
    assert filter_server_state(STATE, text, text).splitlines()[2:] == []


def test_server_state_dropped_when_the_weight_changes(settings):
    tree = {'a': {'location': '/a', 'upstream': {'a_1': '127.0.0.1:5001'}}}
    old = render(tree, settings).text
    tree['a']['weight'] = {'a_1': '200'}
    new = render(tree, settings).text
    assert filter_server_state(STATE, old, new).splitlines()[2:] == []


@pytest.mark.parametrize('state', ['', 'junk\n', '2\n# be_id\n1 2 3\n'])
def test_unreadable_server_state_is_dropped(settings, state):
    text = render(SAMPLE, settings).text
    assert filter_server_state(state, text, text) == ''


# -- compression, through a real HAProxy -------------------------------

# What Chromium sends; HAProxy picks gzip, the only algorithm it offers.
BROWSER_ENCODINGS = 'gzip, deflate, br, zstd'


@pytest.fixture
def ui_backend(lb, etcd, backends):
    """A backend routed as the default service, as the ui is."""
    backend = backends('ui_1')
    etcd.put('/services/ui/location', '/')
    etcd.put(f'/services/ui/upstream/{backend.name}', backend.address)
    assert wait_until(lambda: lb.routed_to('/', backend.name), 5) \
        is not None, lb.logs()
    return backend


def fetch(lb, path, accept_encoding=None):
    """GET path through the load balancer: the answer and its body as
    sent, not decoded."""
    headers = {'Connection': 'close'}
    if accept_encoding is not None:
        headers['Accept-Encoding'] = accept_encoding
    response = lb.http.request('GET', lb.url + path, headers=headers,
                               timeout=5, decode_content=False)
    return response, response.data


def shaped(path, **query):
    """path with the query that shapes the backend's answer (conftest)."""
    return f'{path}?{urlencode(query, doseq=True)}'


@pytest.mark.parametrize('content_type', [
    'application/json',                  # the API (Flask's JSON)
    'text/html; charset=utf-8',          # the page
    'text/css; charset=utf-8',           # the page's files, as Flask
    'text/javascript; charset=utf-8',    # sends them
    'application/javascript',
    'image/svg+xml',
])
def test_gzipped_only_for_a_client_that_accepts_it(lb, ui_backend,
                                                   content_type):
    path = shaped('/static/file', type=content_type, repeat=100,
                  header='ETag: "v1"')
    body = b'ui_1 GET /static/file\n' * 100
    # Without gzip among the accepted encodings (wrk in the platform
    # benchmark sends no Accept-Encoding), the answer passes as it is.
    for accept_encoding in (None, 'identity', 'gzip;q=0'):
        answer, sent = fetch(lb, path, accept_encoding)
        assert sent == body, accept_encoding
        assert 'Content-Encoding' not in answer.headers
        assert 'Vary' not in answer.headers
        assert answer.headers['Content-Length'] == str(len(body))
        assert answer.headers['ETag'] == '"v1"'

    answer, sent = fetch(lb, path, BROWSER_ENCODINGS)
    assert answer.status == 200
    assert answer.headers['Content-Type'] == content_type
    assert answer.headers['Content-Encoding'] == 'gzip'
    assert 'Accept-Encoding' in answer.headers['Vary']
    assert gzip.decompress(sent) == body
    assert len(sent) < len(body) / 10
    # Other bytes, so a weak validator: a browser revalidates with
    # W/"v1", which Flask (the ui's static files) compares weakly.
    assert answer.headers['ETag'] == 'W/"v1"'


def test_socketio_polling_and_encoded_answers_are_left_alone(lb,
                                                             ui_backend):
    def json_answer(**query):
        return fetch(lb, shaped('/api/x', type='application/json',
                                repeat=100, **query), BROWSER_ENCODINGS)
    body = b'ui_1 GET /api/x\n' * 100
    # The same answer as JSON, as it is, gets compressed.
    answer, _ = json_answer()
    assert answer.headers['Content-Encoding'] == 'gzip'
    # Socket.IO's polling answers (text/plain): mostly a few bytes, which
    # gzip would only make larger.
    answer, sent = fetch(lb, shaped('/socket.io/', repeat=100,
                                    type='text/plain; charset=UTF-8'),
                         BROWSER_ENCODINGS)
    assert 'Content-Encoding' not in answer.headers
    assert sent == b'ui_1 GET /socket.io/\n' * 100
    # An answer its server compressed (as engine.io does with its large
    # ones) is not compressed twice.
    answer, sent = json_answer(gzip=1)
    assert answer.headers['Content-Encoding'] == 'gzip'
    assert gzip.decompress(sent) == body


# -- what HAProxy answers itself (issue 19, finding 8) -------------------


def raw_request(lb, data, source='127.0.0.1'):
    """Send bytes to the load balancer from ``source``; (status, headers,
    body) of its answer."""
    with socket.create_connection(('127.0.0.1', lb.port), timeout=5,
                                  source_address=(source, 0)) as sock:
        sock.sendall(data)
        answer = b''
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b'\r\n\r\n')
    lines = head.decode('latin-1').split('\r\n')
    headers = dict(line.split(': ', 1) for line in lines[1:] if ': ' in line)
    return int(lines[0].split()[1]), headers, body


def assert_json_error(status, headers, body, expected):
    assert status == expected, (status, headers, body)
    assert headers['content-type'] == 'application/json', headers
    assert set(json.loads(body)) == {'error'}, body


def test_haproxys_own_errors_are_json(lb, etcd, ui_backend):
    """Its answers were HTML pages: a service with no instance (503), an
    HTTP/1.1 request without Host (it was answered 200: now 400). (A
    request line HAProxy 2.6 cannot parse still gets its HTML 400: its
    parser's errors take neither http-error nor errorfile.)"""
    etcd.put('/services/things/location', '/api/things')
    things = (b'GET /api/things HTTP/1.1\r\nHost: x\r\nConnection: close'
              b'\r\n\r\n')
    # Once HAProxy has the service's route (before, the ui answers).
    assert wait_until(lambda: raw_request(lb, things)[0] == 503, 5)
    assert_json_error(*raw_request(lb, things), 503)
    assert_json_error(*raw_request(
        lb, b'GET / HTTP/1.1\r\nConnection: close\r\n\r\n'), 400)
    # HTTP/1.0 needs no Host.
    status, _, _ = raw_request(lb, b'GET / HTTP/1.0\r\n\r\n')
    assert status == 200


def test_the_servers_software_is_not_told(lb, ui_backend):
    status, headers, _ = raw_request(
        lb, b'GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
    assert status == 200
    assert 'server' not in {name.lower() for name in headers}, headers


def test_a_body_too_large_is_refused_at_once(lb, etcd, backends, ui_backend):
    """Issue 19, finding 5: a Socket.IO polling POST over 1 MB was never
    answered (through HAProxy: 504 after 60 s). A body over MAX_BODY gets
    a JSON 413 at once; one within it reaches the service."""
    socketio = backends('socketio_1')
    etcd.put('/services/socketio/location', '/socket.io')
    etcd.put(f'/services/socketio/upstream/{socketio.name}', socketio.address)
    path = b'/socket.io/?EIO=4&transport=polling&sid=x'
    assert wait_until(lambda: lb.routed_to(path.decode(), socketio.name), 5) \
        is not None, lb.logs()

    def post(size):
        return raw_request(lb, b'POST ' + path + b' HTTP/1.1\r\nHost: x\r\n'
                           b'Content-Type: text/plain\r\nConnection: close'
                           b'\r\nContent-Length: %d\r\n\r\n' % size +
                           b'4' * size)
    started = time.monotonic()
    assert_json_error(*post(MAX_BODY + 1), 413)
    assert time.monotonic() - started < 2
    status, _, body = post(100000)
    assert status == 200 and body.startswith(b'socketio_1 POST'), body[:100]


# -- rate limits, through a real HAProxy (issue 19, finding 6) -----------

LIMITS = {'logins_per_minute': 3, 'registrations_per_minute': 2,
          'posts_per_minute': 4}


def send(lb, method, path, source='127.0.0.1', token=None):
    """(status, headers, body) of one request from ``source``."""
    auth = f'Authorization: Bearer {token}\r\n' if token else ''
    data = (f'{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}'
            f'Content-Length: 2\r\nConnection: close\r\n\r\n{{}}').encode()
    return raw_request(lb, data, source)


def assert_too_many(answer):
    status, headers, body = answer
    assert_json_error(status, headers, body, 429)
    assert headers['retry-after'] == '60'


@pytest.fixture
def limited_lb(make_lb, etcd, backends):
    """A load balancer with small limits in front of users, tokens and
    messages backends."""
    lb = make_lb(settings=LIMITS)
    for name, location in [('users', '/api/users'), ('tokens', '/api/tokens'),
                           ('messages', '/api/messages')]:
        backend = backends(f'{name}_1')
        etcd.put(f'/services/{name}/location', location)
        etcd.put(f'/services/{name}/upstream/{backend.name}', backend.address)
        assert wait_until(lambda location=location, server=backend.name:
                          lb.routed_to(location, server), 5) \
            is not None, lb.logs()
    return lb


def test_logins_and_registrations_are_limited_per_address(limited_lb):
    lb = limited_lb
    for _ in range(3):
        status, _, body = send(lb, 'POST', '/api/tokens')
        assert status == 200 and body.startswith(b'tokens_1 POST'), body
    assert_too_many(send(lb, 'POST', '/api/tokens'))
    # A refused attempt counts too: who keeps trying stays out.
    assert_too_many(send(lb, 'POST', '/api/tokens'))
    # Another address has its own count; other requests have none.
    assert send(lb, 'POST', '/api/tokens', source='127.0.0.2')[0] == 200
    assert send(lb, 'GET', '/api/tokens')[0] == 200
    # Registrations have their own limit.
    for _ in range(2):
        assert send(lb, 'POST', '/api/users')[0] == 200
    assert_too_many(send(lb, 'POST', '/api/users'))
    assert send(lb, 'GET', '/api/users')[0] == 200


def test_posts_are_limited_per_token(limited_lb):
    """Per token, not per address: Socket.IO's relays of every user come
    from the socketio instances' address."""
    lb = limited_lb
    for _ in range(4):
        assert send(lb, 'POST', '/api/messages', token='a.b.c')[0] == 200
    assert_too_many(send(lb, 'POST', '/api/messages', token='a.b.c'))
    assert send(lb, 'POST', '/api/messages', token='d.e.f')[0] == 200
    # Without a token the service answers 401 itself; nothing is counted.
    for _ in range(6):
        assert send(lb, 'POST', '/api/messages')[0] == 200
    assert send(lb, 'GET', '/api/messages', token='a.b.c')[0] == 200


# -- HTTPS, through a real HAProxy (issue 19, TLS) ------------------------

def test_https_and_the_redirect_of_plain_http(make_lb, etcd, backends,
                                             tls_home):
    https_port = free_port()
    lb = make_lb(settings={'https_port': https_port,
                           'tls_cert': str(tls_home / 'tls' / 'lb.pem'),
                           'https_redirect': True,
                           'internal_sources': ['127.0.0.1']})
    backend = backends('ui_1')
    etcd.put('/services/ui/location', '/')
    etcd.put(f'/services/ui/upstream/{backend.name}', backend.address)
    assert wait_until(lambda: lb.routed_to('/', backend.name), 5) \
        is not None, lb.logs()
    https = urllib3.PoolManager(ca_certs=str(tls_home / 'tls' / 'ca.crt'),
                                retries=False)
    answer = https.request('GET', f'https://127.0.0.1:{https_port}/a?b=c')
    assert answer.status == 200
    assert answer.data == b'ui_1 GET /a\n'
    assert answer.headers['Strict-Transport-Security'] == 'max-age=15552000'
    # localhost is among the certificate's names too.
    assert https.request('GET', f'https://localhost:{https_port}/').status \
        == 200
    # Plain HTTP from outside is sent to HTTPS, method and body kept...
    status, headers, _ = send(lb, 'POST', '/api/x?y=1', source='127.0.0.2')
    assert status == 308
    assert headers['location'] == f'https://x:{https_port}/api/x?y=1'
    # ... from the platform's own addresses it is served as it is.
    status, headers, body = send(lb, 'POST', '/api/x?y=1')
    assert status == 200 and body == b'ui_1 POST /api/x\n'
    assert 'strict-transport-security' not in headers
