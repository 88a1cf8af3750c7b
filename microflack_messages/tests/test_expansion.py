"""Link expansion in the background, through the API, against real HTTP
servers on 127.0.0.1; pushes; the task runner's lifecycle."""
import os
import threading
import time

import pytest
import sqlalchemy as sa
from webserver import html_page, page, slow, unused_port

from microflack_messages import tasks
from microflack_messages.links import NO_DESCRIPTION, preview_html
from microflack_messages.models import Message, db
from microflack_messages.render import render


def link(url):
    return f'<a href="{url}" rel="nofollow">{url}</a>'


def post(client, token, source, user_id=1):
    rv = client.post('/api/messages', {'source': source}, token=token(user_id))
    assert rv.status == 201, rv
    return rv.json


def stored_html(client, message_id):
    return client.get(f'/api/messages/{message_id}').json['html']


@pytest.mark.usefixtures('private_links')
def test_preview_appended_after_the_response(client, token, web, settle):
    web.routes['/page'] = html_page('Hello Page', 'A fine page')
    url = web.url('/page')
    message = post(client, token, f'see {url}')
    assert message['html'] == f'see {link(url)}'
    settle()
    assert stored_html(client, message['id']) == (
        f'see {link(url)}<blockquote><p><a href="{url}">Hello Page</a></p>'
        '<p>A fine page</p></blockquote>')


@pytest.mark.usefixtures('private_links')
def test_fallbacks_and_escaping_end_to_end(client, token, web, settle):
    web.routes['/bare'] = html_page()
    web.routes['/evil'] = html_page('&lt;script&gt;alert(1)&lt;/script&gt;',
                                    '<b>')
    web.routes['/pdf'] = page(b'%PDF-1.4', content_type='application/pdf')
    bare, evil, pdf = web.url('/bare'), web.url('/evil'), web.url('/pdf')
    message = post(client, token, f'{bare} {evil} {pdf}')
    settle()
    html = stored_html(client, message['id'])
    assert html == (
        f'{link(bare)} {link(evil)} {link(pdf)}'
        f'<blockquote><p><a href="{bare}">{bare}</a></p>'
        f'<p>{NO_DESCRIPTION}</p></blockquote>'
        f'<blockquote><p><a href="{evil}">&lt;script&gt;alert(1)&lt;/script&gt;'
        f'</a></p><p>&lt;b&gt;</p></blockquote>'
        f'<blockquote><p><a href="{pdf}">{pdf}</a></p>'
        f'<p>{NO_DESCRIPTION}</p></blockquote>')
    assert '<script' not in html


@pytest.mark.usefixtures('private_links')
def test_dead_and_failing_links_are_skipped(client, token, web, settle):
    web.routes['/ok'] = html_page('OK')
    web.routes['/boom'] = page('<title>Boom</title>', status=500)
    dead = f'http://127.0.0.1:{unused_port()}/x'
    ok = web.url('/ok')
    message = post(client, token,
                   f'{dead} {web.url("/boom")} {web.url("/missing")} {ok}')
    settle()
    assert stored_html(client, message['id']) == \
        message['html'] + preview_html(ok, 'OK', '')


@pytest.mark.usefixtures('private_links')
def test_at_most_max_links_per_message(client, token, web, settings, settle):
    settings(LINK_MAX_PER_MESSAGE=2)
    for name in 'abc':
        web.routes[f'/{name}'] = html_page(name.upper())
    a, b, c = (web.url(f'/{name}') for name in 'abc')
    message = post(client, token, f'{a} {a} {b} {c}')
    settle()
    assert stored_html(client, message['id']) == (
        message['html'] + preview_html(a, 'A', '') + preview_html(b, 'B', ''))
    assert [web.hits(f'/{name}') for name in 'abc'] == [1, 1, 0]


@pytest.mark.usefixtures('private_links')
def test_byte_cap_from_settings(client, token, web, settings, settle):
    settings(LINK_MAX_BYTES=1024)
    web.routes['/late'] = page('<!--' + 'x' * 4000 + '--><title>Late</title>')
    url = web.url('/late')
    message = post(client, token, url)
    settle()
    assert stored_html(client, message['id']) == \
        message['html'] + preview_html(url, '', '')


@pytest.mark.usefixtures('private_links')
def test_slow_link_does_not_delay_the_response(client, token, web, app,
                                               settle):
    web.routes['/slow'] = slow(html_page('Slow', 'At last'), web)
    url = web.url('/slow')
    start = time.monotonic()
    message = post(client, token, f'wait for {url}')
    assert time.monotonic() - start < 1
    assert message['html'] == f'wait for {link(url)}'
    # The server holds its answer: the expansion is still pending.
    assert not tasks.wait_for_background(0.3, app=app)
    assert stored_html(client, message['id']) == message['html']
    assert client.get('/api/messages').json['messages'][0]['html'] == \
        message['html']
    web.release.set()
    settle()
    assert stored_html(client, message['id']) == \
        message['html'] + preview_html(url, 'Slow', 'At last')


def test_private_links_refused_by_default(app, client, token, web, settle):
    assert app.config['ALLOW_PRIVATE_LINKS'] is False
    web.routes['/page'] = html_page('Internal')
    for host in ('127.0.0.1', 'localhost', '[::1]'):
        url = f'http://{host}:{web.port}/page'
        message = post(client, token, url)
        settle()
        assert stored_html(client, message['id']) == message['html']
    assert web.requests == []


@pytest.mark.usefixtures('private_links')
def test_non_http_links_are_ignored(client, token, web, settle, pusher,
                                    app):
    web.routes['/page'] = html_page('Page')
    port = web.port
    source = (f'ftp://127.0.0.1:{port}/page mailto:a@example.com '
              f'[x](file:///etc/passwd) <a href="gopher://127.0.0.1:{port}/">'
              'g</a> susan@example.com')
    message = post(client, token, source)
    assert tasks.background(app)._pending() == set()
    settle()
    assert stored_html(client, message['id']) == message['html']
    assert web.requests == []
    assert len(pusher.pushes) == 1


@pytest.mark.usefixtures('private_links')
def test_pushes_on_create_expansion_and_edit(client, token, web, pusher,
                                             settle):
    web.routes['/page'] = html_page('Page', 'Desc')
    url = web.url('/page')
    message = post(client, token, f'hi {url}', user_id=3)
    settle()
    expanded = message['html'] + preview_html(url, 'Page', 'Desc')
    assert [name for name, _ in pusher.pushes] == ['Message', 'Message']
    created, after_expansion = (model for _, model in pusher.pushes)
    assert created == message
    assert after_expansion == {**message, 'html': expanded,
                               'updated_at': after_expansion['updated_at']}
    assert after_expansion['updated_at'] >= message['updated_at']
    pusher.pushes.clear()

    rv = client.put(f"/api/messages/{message['id']}", {'source': 'bye'},
                    token=token(3))
    assert rv.status == 204
    settle()
    [(name, edited)] = pusher.pushes
    assert name == 'Message'
    assert edited['source'] == 'bye' and edited['html'] == 'bye'
    assert edited == client.get(f"/api/messages/{message['id']}").json


@pytest.mark.usefixtures('private_links')
def test_edit_re_renders_and_re_expands(client, token, web, settle):
    web.routes['/one'] = html_page('One')
    web.routes['/two'] = html_page('Two')
    one, two = web.url('/one'), web.url('/two')
    message = post(client, token, f'*first* {one}')
    settle()
    rv = client.put(f"/api/messages/{message['id']}",
                    {'source': f'**second** {two}'}, token=token())
    assert rv.status == 204
    settle()
    assert stored_html(client, message['id']) == (
        f'<strong>second</strong> {link(two)}' + preview_html(two, 'Two', ''))


@pytest.mark.usefixtures('private_links')
def test_expansion_dropped_when_edited_meanwhile(client, token, web, pusher,
                                                 settle):
    web.routes['/slow'] = slow(html_page('Slow'), web)
    web.routes['/fast'] = html_page('Fast')
    message = post(client, token, f'old {web.url("/slow")}')
    url = f"/api/messages/{message['id']}"
    assert client.put(url, {'source': 'new *text*'}, token=token()).status \
        == 204
    web.release.set()
    settle()
    assert stored_html(client, message['id']) == 'new <em>text</em>'
    assert all('blockquote' not in model['html'] for _, model in pusher.pushes)

    # An edit that adds a link gets its own expansion.
    fast = web.url('/fast')
    client.put(url, {'source': f'now {fast}'}, token=token())
    settle()
    assert stored_html(client, message['id']) == \
        render(f'now {fast}') + preview_html(fast, 'Fast', '')


@pytest.mark.usefixtures('private_links')
def test_message_deleted_meanwhile(app, client, token, web, settle):
    web.routes['/slow'] = slow(html_page('Slow'), web)
    message = post(client, token, web.url('/slow'))
    with app.app_context():
        db.session.execute(sa.delete(Message))
        db.session.commit()
    web.release.set()
    settle()
    assert client.get(f"/api/messages/{message['id']}").status == 404


@pytest.mark.usefixtures('private_links')
def test_task_errors_are_logged(client, token, web, monkeypatch, caplog,
                                settle):
    real = tasks.link_previews
    calls = []

    def fails_once(*args, **kwargs):
        calls.append(args)
        if len(calls) == 1:
            raise RuntimeError('parser exploded')
        return real(*args, **kwargs)
    monkeypatch.setattr(tasks, 'link_previews', fails_once)
    web.routes['/page'] = html_page('Works')
    message = post(client, token, web.url('/page'))
    settle()
    assert 'background task expand_links' in caplog.text
    assert 'RuntimeError: parser exploded' in caplog.text
    assert stored_html(client, message['id']) == message['html']
    # The pool survives a failed task.
    message = post(client, token, web.url('/page'))
    settle()
    assert stored_html(client, message['id']) == \
        message['html'] + preview_html(web.url('/page'), 'Works', '')


def test_runner_runs_tasks_in_an_app_context(app):
    runner = tasks.BackgroundTasks(app, workers=2)
    seen = []

    def task(value):
        from flask import current_app
        seen.append((value, current_app.name, threading.current_thread().name))
    runner.submit(task, 1)
    runner.submit(task, 2)
    assert runner.wait(5)
    assert sorted(value for value, _, _ in seen) == [1, 2]
    assert all(name == app.name for _, name, _ in seen)
    assert all(thread.startswith('link-expansion') for _, _, thread in seen)
    assert runner.shutdown(5)


def test_runner_creates_no_thread_until_needed(app):
    runner = tasks.BackgroundTasks(app)
    assert runner._executor is None
    assert runner.wait(0)
    assert runner.shutdown(0)


def test_runner_after_fork(app, monkeypatch):
    """A forked worker (gunicorn) gets its own pool, not the parent's."""
    runner = tasks.BackgroundTasks(app, workers=1)
    runner.submit(lambda: None)
    parent_executor = runner._executor
    assert runner.wait(5)
    child_pid = os.getpid() + 1
    monkeypatch.setattr(tasks.os, 'getpid', lambda: child_pid)
    done = threading.Event()
    runner.submit(done.set)
    assert runner._executor is not parent_executor
    assert done.wait(5)
    assert runner.shutdown(5)
    parent_executor.shutdown()


def test_runner_shutdown(app, caplog):
    runner = tasks.BackgroundTasks(app, workers=1)
    started, release = threading.Event(), threading.Event()
    ran = []

    def blocker():
        started.set()
        release.wait(5)
        ran.append('blocker')
    runner.submit(blocker)
    queued = runner.submit(ran.append, 'queued')
    assert started.wait(5)
    assert runner.shutdown(timeout=0.2) is False     # blocker still runs
    assert queued.cancelled()
    assert runner.stopping.is_set()
    assert runner.submit(ran.append, 'late') is None
    assert 'not run' in caplog.text
    release.set()
    assert runner.wait(5)
    assert ran == ['blocker']


@pytest.mark.usefixtures('private_links')
def test_shutdown_abandons_remaining_links(app, web):
    """A running expansion stops fetching once shutdown begins."""
    runner = tasks.BackgroundTasks(app, workers=1)
    web.routes['/slow'] = slow(html_page('Slow'), web)
    web.routes['/next'] = html_page('Next')
    result = []

    def expand():
        from microflack_messages.links import FetchPolicy, link_previews
        result.append(link_previews(
            [web.url('/slow'), web.url('/next')],
            FetchPolicy.from_config(app.config), stop=runner.stopping))
    runner.submit(expand)
    time.sleep(0.2)
    assert runner.shutdown(timeout=0.2) is False
    web.release.set()
    assert runner.wait(5)
    assert result == [preview_html(web.url('/slow'), 'Slow', '')]
    assert web.hits('/next') == 0
