// Unit tests of the paging logic of static/client/ (issue 14): first pages,
// authors, older pages, catching up with the changes feeds, pushes, old
// services. The server is a miniature of the paging contract
// (fakes.fakeServer). `npm test`.
import assert from 'node:assert/strict';
import { describe, it, mock, beforeEach, afterEach } from 'node:test';

import './globals.js';
import { Chat } from '../static/client/chat.js';
import { onlineUsers } from '../static/client/models.js';
import { PollingTransport } from '../static/client/polling-transport.js';
import {
  AUTHORS_WAIT, MAX_CATCHUP_PAGES, POLL_INTERVAL,
} from '../static/client/settings.js';
import {
  fakeFetch, memoryStorage, NOW, DAY, user, message, settle, fakeServer,
  query,
} from './fakes.js';

const LATER = NOW + 10000;     // the server's time: after every message

/** `count` messages, ids 1..count, written by authors 1..`authors`. */
function history(count, authors) {
  return Array.from({ length: count },
    (_unused, i) => message(i + 1, (i % (authors || 10)) + 1));
}

/** `count` users, ids 1..count; those in `online` (ids) are online. */
function people(count, online) {
  return Array.from({ length: count }, (_unused, i) => user(i + 1, `u${i + 1}`,
    { online: (online || []).includes(i + 1) }));
}

/** A chat on a fake server with `state` ({messages, users, now, ...}). */
function setup(state, options) {
  const server = Object.assign({ now: LATER }, state);
  const fetch = fakeFetch(fakeServer(server));
  const chat = new Chat(Object.assign({ fetch, storage: memoryStorage(),
    now: () => server.now * 1000, pageSize: 20 }, options));
  return { chat, fetch, server };
}

function urls(fetch, from) {
  return fetch.calls.slice(from || 0).map((call) => call.url);
}

function authorRequests(fetch) {
  return fetch.calls.filter((call) => call.url.startsWith('/api/users?ids='));
}

describe('first load', () => {
  it('asks for the newest page that fits, who is online, and the authors in one request', async () => {
    const { chat, fetch } = setup({ messages: history(300, 30),
      users: people(40, [1, 2, 3]) }, { pageSize: 25 });
    await chat.refresh();
    assert.deepEqual(urls(fetch).slice(0, 2), ['/api/messages?limit=25',
      '/api/users?online=1&limit=500']);
    const authors = authorRequests(fetch);
    assert.equal(authors.length, 1);
    assert.equal(fetch.calls.length, 3);     // nothing else, no user list
    const asked = query(authors[0].url).ids.split(',').map(Number);
    assert.deepEqual([...new Set(asked)].length, asked.length);
    assert.deepEqual(chat.messages.pluck('id'), _range(276, 300));
    for (const model of chat.messages.models) {
      assert.ok(chat.users.get(model.get('user_id')), `author of ${model.id}`);
    }
    assert.equal(chat.older, '/api/messages?before=276&limit=25');
    assert.equal(chat.feeds.messages, `/api/messages?updated_since=${LATER - 1}`);
    assert.equal(chat.feeds.users, `/api/users?updated_since=${LATER - 1}`);
    assert.equal(chat.historyState(), 'more');
  });

  it('shows the page with its authors\' names: the messages wait for them', async () => {
    const { chat } = setup({ messages: history(5, 5), users: people(5) });
    const seen = [];
    chat.messages.on('reset', () => seen.push(chat.messages.map(
      (m) => Boolean(chat.users.get(m.get('user_id'))))));
    await chat.refresh();
    assert.deepEqual(seen, [[true, true, true, true, true]]);
  });

  it('does not wait for names longer than AUTHORS_WAIT', async () => {
    mock.timers.enable({ apis: ['setTimeout'] });
    try {
      const { chat, fetch } = setup({ messages: history(3, 3), users: people(3) });
      const answer = fetch;
      const slow = async (url, init) => {
        if (url.includes('ids=')) {
          await new Promise(() => {});    // never answers
        }
        return answer(url, init);
      };
      chat.api.fetch = slow;
      const loading = chat.loadNewestMessages();
      await settle();
      assert.equal(chat.messages.length, 0);
      mock.timers.tick(AUTHORS_WAIT);
      await loading;
      assert.deepEqual(chat.messages.pluck('id'), [1, 2, 3]);
    } finally {
      mock.timers.reset();
    }
  });

  it('asks for at most MAX_IDS authors per request, each once', async () => {
    const { chat, fetch } = setup({ users: people(1200) });
    const ids = _range(1, 1200);
    await Promise.all([chat.fetchAuthors(ids.concat(ids)), chat.fetchAuthors(ids)]);
    const sizes = authorRequests(fetch).map(
      (call) => query(call.url).ids.split(',').length);
    assert.deepEqual(sizes, [500, 500, 200]);
    assert.equal(chat.users.length, 1200);
  });

  it('remembers authors the server does not know, and says so once', async () => {
    const { chat, fetch } = setup({ messages: [message(1, 1), message(2, 99)],
      users: people(1) });
    const missing = [];
    chat.on('missing-user', (id) => missing.push(id));
    await chat.refresh();
    await chat.fetchUnknownAuthors();
    assert.deepEqual(missing, [99]);
    assert.equal(authorRequests(fetch).length, 1);
  });

  it('asks again for authors whose request failed', async () => {
    let fail = true;
    const server = fakeServer({ users: people(3) });
    const fetch = fakeFetch({ 'GET /api/users': (call) =>
      (fail ? [503, { error: 'down' }] : server['GET /api/users'](call)) });
    const chat = new Chat({ fetch, storage: memoryStorage() });
    await chat.fetchAuthors([1, 2]);
    assert.equal(chat.users.length, 0);
    assert.equal(chat.missingUsers.size, 0);
    fail = false;
    await chat.fetchAuthors([1, 2]);
    assert.equal(chat.users.length, 2);
  });

  it('says "complete" when the whole history fits in the first page', async () => {
    const { chat, fetch } = setup({ messages: history(5), users: people(10) });
    await chat.refresh();
    assert.equal(chat.older, null);
    assert.equal(chat.historyState(), 'complete');
    const before = fetch.calls.length;
    assert.equal(await chat.loadOlder(), false);
    assert.equal(fetch.calls.length, before);
  });
});

describe('older pages', () => {
  it('loads the next link, with larger pages, above the oldest message', async () => {
    const { chat, fetch } = setup({ messages: history(300), users: people(10) });
    await chat.refresh();
    const from = fetch.calls.length;
    assert.equal(await chat.loadOlder(), true);
    assert.deepEqual(urls(fetch, from), ['/api/messages?before=281&limit=50']);
    assert.deepEqual(chat.messages.pluck('id'), _range(231, 300));
    assert.equal(chat.older, '/api/messages?before=231&limit=50');
  });

  it('never loads two pages at once, nor the same page twice', async () => {
    const { chat, fetch } = setup({ messages: history(300), users: people(10) });
    await chat.refresh();
    const from = fetch.calls.length;
    const states = [];
    chat.on('history', () => states.push(chat.historyState()));
    const first = chat.loadOlder();
    const second = chat.loadOlder();
    assert.equal(first, second);
    assert.equal(chat.historyState(), 'loading');
    await first;
    await chat.loadOlder();
    assert.deepEqual(urls(fetch, from), ['/api/messages?before=281&limit=50',
      '/api/messages?before=231&limit=50']);
    assert.deepEqual(states, ['loading', 'more', 'loading', 'more']);
  });

  it('goes back to the beginning of the chat, then asks no more', async () => {
    const { chat, fetch } = setup({ messages: history(130), users: people(10) });
    await chat.refresh();
    while (chat.historyState() === 'more') {
      await chat.loadOlder();
    }
    assert.deepEqual(chat.messages.pluck('id'), _range(1, 130));
    assert.equal(chat.historyState(), 'complete');
    const older = fetch.calls.filter((call) => call.url.includes('before='));
    assert.equal(older.length, 3);     // 110, 60, 10 remained above
    assert.equal(await chat.loadOlder(), false);
  });

  it('after a failure, tries again only after a pause', async () => {
    mock.timers.enable({ apis: ['setTimeout'] });
    try {
      const { chat, fetch, server } = setup({ messages: history(100), users: people(10) });
      await chat.refresh();
      const messages = server.messages;
      server.messages = null;
      const routes = fakeServer(server);
      chat.api.fetch = fakeFetch({ 'GET /api/messages': [503, { error: 'down' }],
        'GET /api/users': routes['GET /api/users'] });
      const states = [];
      chat.on('history', () => states.push(chat.historyState()));
      assert.equal(await chat.loadOlder(), false);
      assert.equal(await chat.loadOlder(), false);     // paused: not asked
      assert.equal(chat.api.fetch.calls.length, 1);
      chat.api.fetch = fetch;
      server.messages = messages;
      mock.timers.tick(POLL_INTERVAL);
      assert.deepEqual(states, ['loading', 'more', 'more']);
      assert.equal(await chat.loadOlder(), true);
    } finally {
      mock.timers.reset();
    }
  });

  it('drops an older page that arrives after the list started afresh', async () => {
    const { chat, fetch, server } = setup({ messages: history(100), users: people(10) });
    await chat.refresh();
    let answerOlder = null;
    chat.api.fetch = async (url, init) => {
      if (url.includes('before=')) {    // held until the fresh start is done
        await new Promise((resolve) => { answerOlder = resolve; });
      }
      return fetch(url, init);
    };
    const loading = chat.loadOlder();
    server.messages = history(100).concat([message(101, 1)]);
    await chat.loadNewestMessages();
    answerOlder();
    assert.equal(await loading, false);
    assert.deepEqual(chat.messages.pluck('id'), _range(82, 101));
    assert.equal(chat.older, '/api/messages?before=82&limit=20');
  });
});

describe('catching up (the changes feeds)', () => {
  it('follows the updates link, then next at once while there is more', async () => {
    const { chat, fetch, server } = setup({ messages: history(100),
      users: people(10, [1]), maxPage: 30 });
    await chat.refresh();
    server.now = LATER + 100;
    // 70 new messages and an edit of a loaded one (each a change)
    server.messages = server.messages.map((m) => (m.id === 90
      ? message(90, 1, { html: 'edited', updated_at: LATER + 5 }) : m))
      .concat(Array.from({ length: 70 },
        (_u, i) => message(101 + i, 2, { updated_at: LATER + 10 + i })));
    const from = fetch.calls.length;
    await chat.refresh();
    const feed = urls(fetch, from).filter((url) => url.startsWith('/api/messages'));
    assert.deepEqual(feed, [
      `/api/messages?updated_since=${LATER - 1}`,
      `/api/messages?updated_since=${LATER + 38}&after=129&limit=30`,
      `/api/messages?updated_since=${LATER + 68}&after=159&limit=30`,
    ]);
    assert.deepEqual(chat.messages.pluck('id'), _range(81, 170));
    assert.equal(chat.messages.get(90).get('html'), 'edited');
    // Read to its end: the next round asks from a second before its last.
    assert.equal(chat.feeds.messages,
      `/api/messages?updated_since=${LATER + 78}&limit=30`);
  });

  it('leaves changed messages older than the oldest loaded alone', async () => {
    const { chat, server } = setup({ messages: history(100), users: people(10) });
    await chat.refresh();
    server.messages = server.messages.map((m) => (m.id === 10 || m.id === 85
      ? message(m.id, 1, { html: 'edited', updated_at: LATER + 1 }) : m));
    await chat.refresh();
    assert.equal(chat.messages.get(10), undefined);
    assert.equal(chat.messages.get(85).get('html'), 'edited');
    await chat.loadOlder();        // comes in its current form
    assert.equal(chat.messages.get(10), undefined);
    while (chat.historyState() === 'more') {
      await chat.loadOlder();
    }
    assert.equal(chat.messages.get(10).get('html'), 'edited');
  });

  it('starts afresh from the newest page when too far behind', async () => {
    const { chat, fetch, server } = setup({ messages: history(100),
      users: people(10), maxPage: 10 });
    await chat.refresh();
    await chat.loadOlder();
    assert.equal(chat.messages.length, 20);     // pages of 10 at most
    server.now = LATER + 1000;
    server.messages = server.messages.concat(Array.from({ length: 45 },
      (_u, i) => message(101 + i, 2, { updated_at: LATER + 10 + i })));
    const resets = [];
    chat.messages.on('reset', () => resets.push(chat.messages.pluck('id')));
    const from = fetch.calls.length;
    await chat.refresh();
    const feed = urls(fetch, from).filter((url) => url.startsWith('/api/messages'));
    assert.equal(feed.length, MAX_CATCHUP_PAGES + 2);
    assert.equal(feed[MAX_CATCHUP_PAGES], '/api/messages?limit=20');
    // then what changed while that page came
    assert.equal(feed[MAX_CATCHUP_PAGES + 1],
      `/api/messages?updated_since=${LATER + 999}`);
    assert.deepEqual(resets, [_range(136, 145)]);
    assert.equal(chat.older, '/api/messages?before=136&limit=10');
  });

  it('starts afresh when the server moved the feed past our place (away for days)', async () => {
    const { chat, fetch, server } = setup({ messages: history(100), users: people(10) });
    await chat.refresh();
    server.now = LATER + 3 * DAY;
    server.messages = server.messages.concat([
      message(101, 2, { updated_at: LATER + 3 * DAY - 5 })]);
    const from = fetch.calls.length;
    await chat.refresh();
    const feed = urls(fetch, from).filter((url) => url.startsWith('/api/messages'));
    assert.deepEqual(feed, [`/api/messages?updated_since=${LATER - 1}`,
      '/api/messages?limit=20', `/api/messages?updated_since=${LATER + 3 * DAY - 1}`]);
    assert.deepEqual(chat.messages.pluck('id'), _range(82, 101));
  });

  it('users: updates known ones, adds those online, not the others', async () => {
    const { chat, server } = setup({ messages: [message(1, 7)],
      users: people(10, [1, 2]) });
    await chat.refresh();
    assert.deepEqual(chat.users.pluck('id'), [1, 2, 7]);
    server.users = people(10, [1, 3]).map((u) => Object.assign(u,
      { updated_at: LATER + u.id }));
    await chat.refresh();
    assert.deepEqual(chat.users.pluck('id'), [1, 2, 3, 7]);
    assert.deepEqual(onlineUsers(chat.users.toJSON()).map((u) => u.id), [1, 3]);
    assert.equal(chat.users.get(7).get('nickname'), 'u7');   // still named
  });

  it('moves the feed forward with pushes, a second early', () => {
    const { chat } = setup({});
    chat.feeds.messages = '/api/messages?updated_since=100&after=7&limit=500';
    chat.advanceFeed('messages', 90);
    assert.equal(chat.feeds.messages, '/api/messages?updated_since=100&after=7&limit=500');
    chat.advanceFeed('messages', 150);
    assert.equal(chat.feeds.messages, '/api/messages?updated_since=149&limit=500');
    chat.advanceFeed('messages', 'x');
    assert.equal(chat.feeds.messages, '/api/messages?updated_since=149&limit=500');
  });

  it('a list that failed is tried again, the other goes on', async () => {
    const { chat, fetch } = setup({ messages: history(10), users: people(10) });
    const answer = fetch;
    let failUsers = true;
    chat.api.fetch = async (url, init) => (failUsers && url.startsWith('/api/users?online')
      ? { ok: false, status: 503, statusText: '', text: async () => '{"error": "down"}' }
      : answer(url, init));
    await assert.rejects(chat.refresh(), { status: 503 });
    assert.equal(chat.loaded.messages, true);
    assert.equal(chat.loaded.users, false);
    failUsers = false;
    const from = fetch.calls.length;
    await chat.refresh();
    assert.deepEqual(urls(fetch, from), [`/api/messages?updated_since=${LATER - 1}`,
      '/api/users?online=1&limit=500']);
  });
});

describe('pushes', () => {
  it('appends newer messages, updates loaded ones, ignores older ones', async () => {
    const { chat } = setup({ messages: history(100), users: people(10) });
    await chat.refresh();
    chat.applyUpdate('Message', message(101, 1));
    chat.applyUpdate('Message', message(90, 1, { html: 'edited', updated_at: LATER }));
    chat.applyUpdate('Message', message(50, 1, { html: 'edited', updated_at: LATER }));
    chat.applyUpdate('Message', message(81, 1, { html: 'old', updated_at: 0 }));
    assert.deepEqual(chat.messages.pluck('id'), _range(81, 101));
    assert.equal(chat.messages.get(90).get('html'), 'edited');
    assert.equal(chat.messages.get(81).get('html'), 'm81');
  });

  it('ignores messages before the first page is in (it, or the feed, brings them)', () => {
    const { chat } = setup({});
    chat.applyUpdate('Message', message(1, 1));
    assert.equal(chat.messages.length, 0);
  });

  it('fetches the unknown author of a pushed message', async () => {
    const { chat, fetch } = setup({ messages: history(3, 1), users: people(5) });
    await chat.refresh();
    chat.applyUpdate('Message', message(4, 5));
    await settle();
    assert.equal(authorRequests(fetch).at(-1).url, '/api/users?ids=5');
    assert.equal(chat.users.get(5).get('nickname'), 'u5');
  });

  it('users: an offline user leaves the online list, stays known', async () => {
    const { chat } = setup({ messages: [message(1, 2)], users: people(5, [1, 2]) });
    await chat.refresh();
    chat.applyUpdate('User', user(2, 'u2', { online: false, updated_at: LATER }));
    chat.applyUpdate('User', user(4, 'u4', { online: false, updated_at: LATER }));
    chat.applyUpdate('User', user(5, 'u5', { online: true, updated_at: LATER }));
    assert.deepEqual(chat.users.pluck('id'), [1, 2, 5]);
    assert.deepEqual(onlineUsers(chat.users.toJSON()).map((u) => u.id), [1, 5]);
  });
});

describe('an old messages and users service (rolling upgrade)', () => {
  it('takes the plain list as the whole history and catches up by updated_since', async () => {
    const { chat, fetch, server } = setup({ legacy: true,
      messages: history(30, 3).map((m) => Object.assign(m, { updated_at: LATER - 100 + m.id })),
      users: people(5, [1]) });
    await chat.refresh();
    assert.deepEqual(chat.messages.pluck('id'), _range(1, 30));
    assert.equal(chat.historyState(), 'complete');
    assert.deepEqual(chat.users.pluck('id'), [1, 2, 3]);   // ids= ignored: filtered
    server.messages = server.messages.concat([
      message(31, 1, { updated_at: LATER + 5 })]);
    const from = fetch.calls.length;
    await chat.refresh();
    await chat.refresh();
    const feed = urls(fetch, from).filter((url) => url.startsWith('/api/messages'));
    assert.deepEqual(feed, [`/api/messages?updated_since=${LATER - 71}`,
      `/api/messages?updated_since=${LATER + 4}`]);
    assert.deepEqual(chat.messages.pluck('id'), _range(1, 31));
    assert.equal(await chat.loadOlder(), false);
  });
});

describe('PollingTransport', () => {
  beforeEach(() => mock.timers.enable({ apis: ['setTimeout'] }));
  afterEach(() => mock.timers.reset());

  it('loads the first pages, then catches up every second', async () => {
    const { chat, fetch } = setup({ messages: history(50), users: people(10, [1]) });
    const transport = new PollingTransport(chat, { timers: globalThis });
    transport.start();
    for (let i = 0; i < 5; i++) {
      await settle();
    }
    assert.deepEqual(urls(fetch).slice(0, 2), ['/api/messages?limit=20',
      '/api/users?online=1&limit=500']);
    const from = fetch.calls.length;
    mock.timers.tick(POLL_INTERVAL);
    for (let i = 0; i < 5; i++) {
      await settle();
    }
    transport.stop();
    assert.deepEqual(urls(fetch, from), [`/api/messages?updated_since=${LATER - 1}`,
      `/api/users?updated_since=${LATER - 1}`]);
  });
});

function _range(first, last) {
  return Array.from({ length: last - first + 1 }, (_u, i) => first + i);
}
