// Unit tests of the client logic in static/client/ (no browser needed):
// `npm test`, which runs `node --test tests/`.
import assert from 'node:assert/strict';
import { describe, it, mock, beforeEach, afterEach } from 'node:test';

import './globals.js';
import { Api, withQuery } from '../static/client/api.js';
import { Chat } from '../static/client/chat.js';
import { basicAuthHeader, tokenClaims } from '../static/client/credentials.js';
import {
  compareUsers, mergeModels, Messages, onlineUsers, Users,
} from '../static/client/models.js';
import {
  chunks, firstFeedLink, latestUpdate, linkNumber, nextFeedLink, pageSizeFor,
  readPage, updatedSince, withParams,
} from '../static/client/paging.js';
import { backoff, Poller } from '../static/client/poller.js';
import { PollingTransport } from '../static/client/polling-transport.js';
import {
  FIRST_PAGE_MAX, FIRST_PAGE_MIN, STORAGE_KEY,
} from '../static/client/settings.js';
import { formatTime } from '../static/client/time-format.js';

import {
  fakeFetch, memoryStorage, jwt, HOUR, NOW, user, message, settle,
} from './fakes.js';

// --- pure helpers ------------------------------------------------------------

describe('basicAuthHeader', () => {
  it('encodes ASCII credentials like any Basic header', () => {
    assert.equal(basicAuthHeader('susan', 'dog'),
      `Basic ${Buffer.from('susan:dog').toString('base64')}`);
  });

  it('encodes non-ASCII nicknames and passwords as UTF-8', () => {
    const header = basicAuthHeader('zoë🙂', 'pässwörd');
    assert.equal(header,
      `Basic ${Buffer.from('zoë🙂:pässwörd', 'utf8').toString('base64')}`);
    const decoded = Buffer.from(header.slice(6), 'base64').toString('utf8');
    assert.equal(decoded, 'zoë🙂:pässwörd');
  });
});

describe('tokenClaims', () => {
  it('reads the payload of a JWT', () => {
    assert.deepEqual(tokenClaims(jwt({ user_id: 7, exp: NOW })),
      { user_id: 7, exp: NOW });
  });

  it('is null for anything else', () => {
    for (const token of [null, '', 'abc', 'a.!!!.c', 'a.bm90IGpzb24.c']) {
      assert.equal(tokenClaims(token), null, String(token));
    }
  });
});

describe('updated_since cursor', () => {
  it('is the largest updated_at, asked again from the second before', () => {
    assert.equal(latestUpdate([]), null);
    assert.equal(latestUpdate([{ updated_at: 5 }, { updated_at: 9 },
      { updated_at: 7 }, {}]), 9);
    assert.equal(updatedSince(null), null);
    assert.equal(updatedSince(9), 8);
  });
});

describe('mergeModels', () => {
  it('adds new models and merges known ones by id', () => {
    const messages = new Messages([message(1, 1), message(2, 1)]);
    mergeModels(messages, [
      message(2, 1, { html: 'edited', updated_at: NOW + 50 }),
      message(3, 2),
    ]);
    assert.deepEqual(messages.pluck('id'), [1, 2, 3]);
    assert.equal(messages.get(2).get('html'), 'edited');
  });

  it('keeps messages in the order they were stored (by id)', () => {
    const messages = new Messages();
    mergeModels(messages, [message(3, 1), message(1, 1)]);
    mergeModels(messages, [message(2, 1, { created_at: NOW + 9 }),
      message(1, 1, { updated_at: NOW + 100 })]);
    assert.deepEqual(messages.pluck('id'), [1, 2, 3]);
  });

  it('never replaces a model by an older version', () => {
    const messages = new Messages([
      message(1, 1, { html: 'new', updated_at: NOW + 10 })]);
    mergeModels(messages, [message(1, 1, { html: 'old', updated_at: NOW })]);
    assert.equal(messages.get(1).get('html'), 'new');
  });

  it('with onlyNew, leaves known models alone', () => {
    const messages = new Messages([message(1, 1, { html: 'rendered' })]);
    mergeModels(messages, [message(1, 1, { html: '' }), message(2, 1)],
      { onlyNew: true });
    assert.equal(messages.get(1).get('html'), 'rendered');
    assert.equal(messages.length, 2);
  });

  it('ignores things without an id', () => {
    const users = new Users();
    assert.equal(mergeModels(users, [null, { nickname: 'x' }]), 0);
    assert.equal(users.length, 0);
  });
});

describe('compareUsers', () => {
  it('puts online users first, then sorts by nickname', () => {
    const users = [user(1, 'bob', { online: false }), user(2, 'Carol'),
      user(3, 'alice', { online: false }), user(4, 'anna')];
    assert.deepEqual(users.sort(compareUsers).map((u) => u.nickname),
      ['anna', 'Carol', 'alice', 'bob']);
  });

  it('lists the users online only (onlineUsers)', () => {
    const users = [user(1, 'bob', { online: false }), user(2, 'Carol'),
      user(3, 'alice', { online: false }), user(4, 'anna')];
    assert.deepEqual(onlineUsers(users).map((u) => u.nickname),
      ['anna', 'Carol']);
  });
});

describe('formatTime', () => {
  const options = { locale: 'en-GB', timeZone: 'UTC', now: NOW * 1000 + 20 * HOUR * 1000 };

  it('shows the time alone for today', () => {
    assert.equal(formatTime(NOW + 14 * HOUR + 5 * 60, options), '14:05');
  });

  it('adds the day for earlier days, and the year for earlier years', () => {
    assert.equal(formatTime(NOW + 5 * 24 * HOUR, Object.assign({}, options,
      { now: (NOW + 40 * 24 * HOUR) * 1000 })), '6 Jan, 00:00');
    assert.equal(formatTime(NOW - 2 * HOUR, options), '31 Dec 2025, 22:00');
  });
});

describe('reading pages and links', () => {
  it('reads a page: items, more, next, updates, the feed\'s start', () => {
    const read = readPage({ messages: [message(1, 1), null, { x: 1 }],
      _meta: { limit: 2, more: true, updated_since: NOW },
      _links: { self: '/a', next: '/b', updates: '/c' } }, 'messages');
    assert.deepEqual(read.items.map((m) => m.id), [1]);
    assert.equal(read.paged, true);
    assert.equal(read.more, true);
    assert.equal(read.next, '/b');
    assert.equal(read.updates, '/c');
    assert.equal(read.updatedSince, NOW);
  });

  it('takes an answer without _meta (an old service) as the whole list', () => {
    for (const data of [{ messages: [message(1, 1)] },
      { messages: [message(1, 1)], _links: { next: '/b' } }]) {
      const read = readPage(data, 'messages');
      assert.deepEqual([read.paged, read.more, read.next, read.updates,
        read.items.length], [false, false, null, null, 1]);
    }
    assert.deepEqual(readPage(null, 'users').items, []);
    assert.deepEqual(readPage({ users: 'x', _meta: {} }, 'users').items, []);
  });

  it('changes and reads the parameters of links', () => {
    assert.equal(withParams('/api/messages?before=951&limit=20', { limit: 50 }),
      '/api/messages?before=951&limit=50');
    assert.equal(withParams('/api/messages?updated_since=5&after=3&limit=9',
      { updated_since: 8, after: null }), '/api/messages?updated_since=8&limit=9');
    assert.equal(withParams('http://other:8080/x?a=1', { b: 2 }),
      'http://other:8080/x?a=1&b=2');
    assert.equal(linkNumber('/x?updated_since=12&after=3', 'updated_since'), 12);
    assert.equal(linkNumber('/x?updated_since=', 'updated_since'), null);
    assert.equal(linkNumber('/x', 'updated_since'), null);
  });

  it('continues a feed from its next link, an old service\'s from its newest change', () => {
    const url = '/api/messages?updated_since=5';
    assert.equal(nextFeedLink(url, readPage({ messages: [],
      _meta: { more: false }, _links: { next: '/next' } }, 'messages')), '/next');
    assert.equal(nextFeedLink(url, readPage({ messages: [
      message(1, 1, { updated_at: 40 }), message(2, 1, { updated_at: 30 })] },
    'messages')), '/api/messages?updated_since=39');
    assert.equal(nextFeedLink(url, readPage({ messages: [] }, 'messages')), url);
    assert.equal(firstFeedLink('/api/messages', readPage({ messages: [],
      _meta: {}, _links: { updates: '/feed' } }, 'messages')), '/feed');
    assert.equal(firstFeedLink('/api/messages', readPage({ messages: [
      message(1, 1, { updated_at: 40 })] }, 'messages')),
    '/api/messages?updated_since=39');
  });

  it('sizes the first page to the list, within bounds', () => {
    assert.equal(pageSizeFor(0), FIRST_PAGE_MIN);
    assert.equal(pageSizeFor(undefined), FIRST_PAGE_MIN);
    assert.equal(pageSizeFor(1200), 30);
    assert.equal(pageSizeFor(100000), FIRST_PAGE_MAX);
  });

  it('cuts lists into chunks', () => {
    assert.deepEqual(chunks([1, 2, 3, 4, 5], 2), [[1, 2], [3, 4], [5]]);
    assert.deepEqual(chunks([], 2), []);
  });
});

describe('withQuery', () => {
  it('adds the parameters that have a value', () => {
    assert.equal(withQuery('/api/users', {}), '/api/users');
    assert.equal(withQuery('/api/users', { updated_since: null }), '/api/users');
    assert.equal(withQuery('/api/users', { updated_since: 0 }),
      '/api/users?updated_since=0');
  });
});

// --- Api ---------------------------------------------------------------------

describe('Api', () => {
  it('sends JSON with the current token and returns the answer', async () => {
    const fetch = fakeFetch({ 'POST /api/messages': [201, { id: 1 }] });
    const api = new Api({ fetch, getToken: () => 'tok' });
    assert.deepEqual(await api.post('/api/messages', { source: 'hi' }), { id: 1 });
    const call = fetch.calls[0];
    assert.equal(call.headers.Authorization, 'Bearer tok');
    assert.equal(call.headers['Content-Type'], 'application/json');
    assert.deepEqual(call.body, { source: 'hi' });
  });

  it('sends no Authorization without a token, and accepts empty answers', async () => {
    const fetch = fakeFetch({ 'PUT /api/users/me': [204] });
    const api = new Api({ fetch, getToken: () => null });
    assert.equal(await api.put('/api/users/me'), null);
    assert.equal(fetch.calls[0].headers.Authorization, undefined);
    assert.equal(fetch.calls[0].body, undefined);
  });

  it('reports a 401 of a token, with the token', async () => {
    const fetch = fakeFetch({ 'GET /api/users': [401, { error: 'authentication required' }] });
    const seen = [];
    const api = new Api({ fetch, getToken: () => 'tok',
      onUnauthorized: (token) => seen.push(token) });
    await assert.rejects(api.get('/api/users'),
      { name: 'ApiError', status: 401, message: 'authentication required' });
    assert.deepEqual(seen, ['tok']);
  });

  it('does not report a 401 of Basic credentials', async () => {
    const fetch = fakeFetch({ 'POST /api/tokens': [401, { error: 'nope' }] });
    const seen = [];
    const api = new Api({ fetch, getToken: () => 'tok',
      onUnauthorized: (token) => seen.push(token) });
    await assert.rejects(api.post('/api/tokens', undefined, { basic: 'Basic x' }),
      { status: 401 });
    assert.equal(fetch.calls[0].headers.Authorization, 'Basic x');
    assert.deepEqual(seen, []);
  });

  it('turns network failures and non-JSON errors into ApiErrors', async () => {
    const api = new Api({ fetch: fakeFetch({
      'GET /a': new TypeError('Failed to fetch'),
      'GET /b': () => [502, undefined],
    }) });
    await assert.rejects(api.get('/a'), { name: 'ApiError', status: 0 });
    await assert.rejects(api.get('/b'), { name: 'ApiError', status: 502, message: '502' });
  });
});

// --- Poller --------------------------------------------------------------------

describe('backoff', () => {
  it('doubles the first pause with each failure, up to the most', () => {
    assert.deepEqual([1, 2, 3, 4, 5, 6].map((n) => backoff(1000, n, 10000)),
      [1000, 2000, 4000, 8000, 10000, 10000]);
  });
});

describe('Poller', () => {
  beforeEach(() => mock.timers.enable({ apis: ['setTimeout'] }));
  afterEach(() => mock.timers.reset());

  it('starts the next run only after the previous one finished', async () => {
    let runs = 0;
    let finish = null;
    const poller = new Poller(() => {
      runs += 1;
      return new Promise((resolve) => { finish = resolve; });
    }, { interval: 1000 });
    poller.start();
    assert.equal(runs, 1);
    mock.timers.tick(5000);            // a slow request: nothing piles up
    await settle();
    assert.equal(runs, 1);
    finish();
    await settle();
    mock.timers.tick(999);
    assert.equal(runs, 1);
    mock.timers.tick(1);
    assert.equal(runs, 2);
    poller.stop();
    finish();
    await settle();
    mock.timers.tick(10000);
    assert.equal(runs, 2);
  });

  it('slows down while failing, up to maxInterval, and recovers', async () => {
    const outcomes = [false, false, false, false, true, true];
    const delays = [];
    const errors = [];
    let successes = 0;
    const poller = new Poller(async () => {
      if (!outcomes.shift()) {
        throw new Error('down');
      }
    }, { interval: 1000, maxInterval: 5000,
      onError: (error) => errors.push(error.message),
      onSuccess: () => { successes += 1; } });
    poller.start();
    for (let i = 0; i < 5; i++) {
      await settle();
      delays.push(poller.delay());
      mock.timers.tick(poller.delay());
    }
    poller.stop();
    assert.deepEqual(delays, [2000, 4000, 5000, 5000, 1000]);
    assert.equal(errors.length, 4);
    assert.equal(successes, 1);
  });
});

// --- Chat --------------------------------------------------------------------

function makeChat(routes, options) {
  const fetch = fakeFetch(routes);
  const storage = memoryStorage();
  const chat = new Chat(Object.assign({ fetch, storage,
    now: () => NOW * 1000 }, options));
  return { chat, fetch, storage };
}

describe('Chat.login', () => {
  it('registers, then gets a token with Basic auth, and keeps it', async () => {
    const token = jwt({ user_id: 3, exp: NOW + HOUR });
    const { chat, fetch, storage } = makeChat({
      'POST /api/users': [201, user(3, 'zoë')],
      'POST /api/tokens': [200, { token }],
    });
    await chat.login('zoë', 'pw');
    assert.deepEqual(fetch.calls.map((c) => `${c.method} ${c.url}`),
      ['POST /api/users', 'POST /api/tokens']);
    assert.deepEqual(fetch.calls[0].body, { nickname: 'zoë', password: 'pw' });
    assert.equal(fetch.calls[0].headers.Authorization, undefined);
    assert.equal(fetch.calls[1].headers.Authorization, basicAuthHeader('zoë', 'pw'));
    assert.deepEqual(chat.session.toJSON(), { token, userId: 3, nickname: 'zoë' });
    assert.deepEqual(JSON.parse(storage.getItem(STORAGE_KEY)),
      { token, nickname: 'zoë' });
  });

  it('logs an existing nickname in (register answers 400)', async () => {
    const token = jwt({ user_id: 1, exp: NOW + HOUR });
    const { chat } = makeChat({
      'POST /api/users': [400, { error: 'nickname already exists' }],
      'POST /api/tokens': [200, { token }],
    });
    await chat.login('susan', 'dog');
    assert.equal(chat.session.get('userId'), 1);
  });

  it('says so when the password is wrong', async () => {
    const { chat, storage } = makeChat({
      'POST /api/users': [400, { error: 'nickname already exists' }],
      'POST /api/tokens': [401, { error: 'authentication required' }],
    });
    await assert.rejects(chat.login('susan', 'cat'), /Wrong password/);
    assert.equal(chat.session.isLoggedIn(), false);
    assert.equal(storage.items.size, 0);
  });

  it('reports a service problem instead of a wrong password', async () => {
    const { chat } = makeChat({
      'POST /api/users': [503, { error: 'database unavailable' }],
      'POST /api/tokens': [401, { error: 'authentication required' }],
    });
    await assert.rejects(chat.login('susan', 'dog'), /database unavailable/);
  });

  it('checks the form before asking the server', async () => {
    const { chat, fetch } = makeChat({});
    await assert.rejects(chat.login('', 'pw'), /Enter a nickname/);
    await assert.rejects(chat.login('a:b', 'pw'), /cannot contain/);
    assert.equal(fetch.calls.length, 0);
  });
});

describe('Chat session', () => {
  it('restores a kept token until it expires', () => {
    const token = jwt({ user_id: 4, exp: NOW + 60 });
    const { chat, storage } = makeChat({});
    storage.setItem(STORAGE_KEY, JSON.stringify({ token, nickname: 'x' }));
    assert.equal(chat.restore(), true);
    assert.equal(chat.session.get('userId'), 4);

    const later = makeChat({}, { now: () => (NOW + 61) * 1000 });
    later.storage.setItem(STORAGE_KEY, JSON.stringify({ token, nickname: 'x' }));
    assert.equal(later.chat.restore(), false);
    assert.equal(later.storage.items.size, 0);
  });

  it('logs out on a 401, but not because of an old token', async () => {
    const token = jwt({ user_id: 4, exp: NOW + 60 });
    const { chat, storage } = makeChat({
      'GET /api/users': [401, { error: 'authentication required' }],
    });
    chat.remember(token, 'x');
    chat.forget('some-older-token');
    assert.equal(chat.session.isLoggedIn(), true);
    await assert.rejects(chat.loadOnlineUsers(), { status: 401 });
    assert.equal(chat.session.isLoggedIn(), false);
    assert.equal(storage.items.size, 0);
  });

  it('logout forgets the token, marks the user offline and revokes it', async () => {
    const token = jwt({ user_id: 4, exp: NOW + 60 });
    const { chat, fetch } = makeChat({
      'DELETE /api/users/me': [204],
      'DELETE /api/tokens': [204],
    });
    chat.remember(token, 'x');
    const done = chat.logout();
    assert.equal(chat.session.isLoggedIn(), false);
    await done;
    assert.deepEqual(fetch.calls.map((c) => `${c.method} ${c.url} ${c.headers.Authorization}`),
      [`DELETE /api/users/me Bearer ${token}`, `DELETE /api/tokens Bearer ${token}`]);
  });
});

describe('Chat.postMessage', () => {
  it('adds the answer without undoing a newer polled version', async () => {
    const { chat } = makeChat({
      'POST /api/messages': [201, message(7, 1, { html: '' })],
    });
    chat.loaded.messages = true;       // an empty chat, loaded
    const posted = await chat.postMessage('hello');
    assert.equal(posted.id, 7);
    assert.equal(chat.messages.get(7).get('source'), 'm7');
    chat.messages.get(7).set('html', 'rendered');
    await chat.postMessage('hello');
    assert.equal(chat.messages.get(7).get('html'), 'rendered');
  });
});

describe('PollingTransport', () => {
  it('a 401 during a poll is a logout, not a connection problem', async () => {
    const token = jwt({ user_id: 4, exp: NOW + 60 });
    const { chat } = makeChat({
      'GET /api/users': [401, { error: 'authentication required' }],
      'GET /api/messages': [200, { messages: [], _meta: { more: false },
        _links: { updates: `/api/messages?updated_since=${NOW}` } }],
    });
    chat.remember(token, 'x');
    const transport = new PollingTransport(chat);
    await transport.poll();
    assert.equal(chat.session.isLoggedIn(), false);
  });

  it('pings only while logged in', async () => {
    const { chat, fetch } = makeChat({ 'PUT /api/users/me': [204] });
    const transport = new PollingTransport(chat);
    await transport.ping();
    assert.equal(fetch.calls.length, 0);
    chat.remember(jwt({ user_id: 4, exp: NOW + 60 }), 'x');
    await transport.ping();
    assert.deepEqual(fetch.calls.map((c) => `${c.method} ${c.url}`), ['PUT /api/users/me']);
  });
});
