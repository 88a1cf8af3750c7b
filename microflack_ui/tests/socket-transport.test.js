// Unit tests of SocketTransport (static/client/socket-transport.js),
// driven by a fake socket in place of socket.io-client: `npm test`.
import assert from 'node:assert/strict';
import { describe, it, mock, beforeEach, afterEach } from 'node:test';

import './globals.js';
import { Chat } from '../static/client/chat.js';
import { PollingTransport } from '../static/client/polling-transport.js';
import { SocketTransport } from '../static/client/socket-transport.js';
import { makeTransport, readConfig } from '../static/client/start.js';
import {
  fakeFetch, memoryStorage, jwt, HOUR, NOW, user, message, settle, fakeServer,
} from './fakes.js';

/** What the transport sees of a socket.io-client Socket; the test plays
 * the server with connectNow(), drop(), serverEvent(). */
class FakeSocket {
  constructor(options) {
    this.options = options;
    this.handlers = new Map();
    this.emitted = [];       // [event, ...args] (an ack callback included)
    this.connected = false;
    this.active = true;      // false: socket.io-client gave up by itself
    this.connectCalls = 0;
    this.disconnected = false;
  }

  on(event, handler) {
    if (!this.handlers.has(event)) {
      this.handlers.set(event, []);
    }
    this.handlers.get(event).push(handler);
    return this;
  }

  off() {
    this.handlers.clear();
    return this;
  }

  emit(event, ...args) {
    this.emitted.push([event, ...args]);
    return this;
  }

  connect() {
    this.connectCalls += 1;
    return this;
  }

  disconnect() {
    this.disconnected = true;
    this.connected = false;
    return this;
  }

  // --- the server's side ---

  fire(event, ...args) {
    for (const handler of this.handlers.get(event) || []) {
      handler(...args);
    }
  }

  connectNow() {
    this.connected = true;
    this.fire('connect');
  }

  drop(reason) {
    this.connected = false;
    this.fire('disconnect', reason || 'transport close');
  }

  serverEvent(event, ...args) {
    this.fire(event, ...args);
  }

  sent(event) {
    return this.emitted.filter((item) => item[0] === event);
  }
}

/** A chat on a fake fetch, a SocketTransport on a fake socket (not
 * started), and what the chat reported as 'connection' events. */
function setup(routes, options) {
  const fetch = fakeFetch(routes);
  const chat = new Chat({ fetch, storage: memoryStorage(),
    now: () => NOW * 1000 });
  const sockets = [];
  const io = (opts) => {
    const socket = new FakeSocket(opts);
    sockets.push(socket);
    return socket;
  };
  const transport = new SocketTransport(chat, Object.assign({ io },
    options));
  const connection = [];
  chat.on('connection', (ok) => connection.push(ok));
  return { chat, fetch, transport, sockets, connection };
}

const TOKEN = jwt({ user_id: 1, exp: NOW + HOUR });

/** A platform's answers (fakes.fakeServer): users 1 and 2, online,
 * messages 1 and 2 by them (updated_at NOW + 1 and NOW + 2), the server's
 * time NOW + 10. The test changes `server` to change what it answers. */
function routes(server) {
  const state = server || {};
  state.now = state.now || NOW + 10;
  state.users = state.users || [user(1, 'a'), user(2, 'b')];
  state.messages = state.messages || [message(1, 1), message(2, 2)];
  return fakeServer(state);
}

function urls(fetch) {
  return fetch.calls.map((call) => `${call.method} ${call.url}`);
}

// The first load: the newest page of messages, who is online, and the
// authors of the page (asked before the online page is in).
const FIRST_LOAD = ['GET /api/messages?limit=20',
  'GET /api/users?online=1&limit=500', 'GET /api/users?ids=1,2'];

describe('SocketTransport: loading and pushes', () => {
  it('connects at /socket.io and loads the first pages at once', async () => {
    const { chat, fetch, transport, sockets } = setup(routes());
    transport.start();
    assert.equal(sockets.length, 1);
    assert.deepEqual(sockets[0].options, { path: '/socket.io' });
    await transport.loading;
    assert.deepEqual(urls(fetch), FIRST_LOAD);
    assert.deepEqual(chat.messages.pluck('id'), [1, 2]);
    transport.start();                       // started once only
    assert.equal(sockets.length, 1);
  });

  it('applies updated_model pushes without asking the REST API', async () => {
    const { chat, fetch, transport, sockets } = setup(routes());
    transport.start();
    sockets[0].connectNow();
    await transport.loading;
    const before = fetch.calls.length;
    const socket = sockets[0];
    socket.serverEvent('updated_model', { class: 'Message',
      model: message(3, 2, { html: '<em>hi</em>' }) });
    socket.serverEvent('updated_model', { class: 'User',
      model: user(2, 'b', { online: false, updated_at: NOW + 7 }) });
    socket.serverEvent('updated_model', { class: 'Message',
      model: message(1, 1, { html: 'edited', updated_at: NOW + 8 }) });
    for (const junk of [null, 'x', {}, { class: 'User' },
      { class: 'User', model: 'x' }, { class: 'Other', model: { id: 9 } }]) {
      socket.serverEvent('updated_model', junk);
    }
    assert.deepEqual(chat.messages.pluck('id'), [1, 2, 3]);
    assert.equal(chat.messages.get(3).get('html'), '<em>hi</em>');
    assert.equal(chat.messages.get(1).get('html'), 'edited');
    assert.equal(chat.users.get(2).get('online'), false);
    assert.equal(chat.users.length, 2);
    await settle();
    assert.equal(fetch.calls.length, before);
  });

  it('a connection brings what changed since the first pages (the feeds)', async () => {
    const server = {};
    const { chat, fetch, transport, sockets } = setup(routes(server));
    transport.start();
    await transport.loading;
    server.messages.push(message(4, 1, { updated_at: NOW + 12 }));
    sockets[0].connectNow();
    await transport.loading;
    // the pages' `updates` links: the feeds from a second before NOW + 10
    assert.deepEqual(urls(fetch).slice(3), [
      `GET /api/messages?updated_since=${NOW + 9}`,
      `GET /api/users?updated_since=${NOW + 9}`,
    ]);
    assert.deepEqual(chat.messages.pluck('id'), [1, 2, 4]);
  });

  it('a resync from the server catches up by the feeds, as a reconnection', async () => {
    const server = {};
    const { chat, fetch, transport, sockets } = setup(routes(server));
    transport.start();
    sockets[0].connectNow();
    await transport.loading;
    await settle();
    const before = fetch.calls.length;
    server.messages.push(message(4, 1, { updated_at: NOW + 12 }));
    sockets[0].serverEvent('resync');
    await transport.loading;
    // the feeds' links, as the connection's catch-up left them
    assert.deepEqual(urls(fetch).slice(before), [
      `GET /api/messages?updated_since=${NOW + 9}&limit=500`,
      `GET /api/users?updated_since=${NOW + 9}&limit=500`,
    ]);
    assert.deepEqual(chat.messages.pluck('id'), [1, 2, 4]);
  });

  it('a load asked for during another one runs after it, once', async () => {
    const { fetch, transport, sockets } = setup(routes());
    transport.start();                       // first load running
    sockets[0].connectNow();                 // asks for one more
    transport.load();                        // ... still just one more
    await transport.loading;
    await settle();
    assert.deepEqual(urls(fetch), [...FIRST_LOAD,
      `GET /api/messages?updated_since=${NOW + 9}`,
      `GET /api/users?updated_since=${NOW + 9}`]);
  });

  it('after a reconnection, catches up from the newest push seen (minus a second)', async () => {
    const server = {};
    const { chat, fetch, transport, sockets, connection } = setup(
      routes(server));
    transport.start();
    const socket = sockets[0];
    socket.connectNow();
    await transport.loading;
    socket.serverEvent('updated_model', { class: 'Message',
      model: message(5, 1, { updated_at: NOW + 50 }) });
    socket.serverEvent('updated_model', { class: 'User',
      model: user(1, 'a', { updated_at: NOW + 40 }) });

    socket.drop();                           // a socketio instance stops
    assert.deepEqual(connection, [true, false]);
    server.messages.push(message(5, 1, { updated_at: NOW + 50 }),
      message(6, 2, { updated_at: NOW + 70 }));   // 6 missed
    server.now = NOW + 80;
    const before = fetch.calls.length;
    socket.emitted = [];
    chat.remember(TOKEN, 'a');
    socket.connectNow();                     // ... and another one answers
    await transport.loading;
    // (the feeds' links, their updated_since moved: `limit` is theirs)
    assert.deepEqual(urls(fetch).slice(before), [
      `GET /api/messages?updated_since=${NOW + 49}&limit=500`,
      `GET /api/users?updated_since=${NOW + 39}&limit=500`,
    ]);
    assert.deepEqual(chat.messages.pluck('id'), [1, 2, 5, 6]);
    assert.deepEqual(socket.sent('ping_user'), [['ping_user', TOKEN]]);
    assert.deepEqual(connection, [true, false, true]);
  });

  it('pushes before the load that follows a connection do not move the feeds', async () => {
    let finishMessages = null;
    const { chat, fetch, transport, sockets } = setup(routes());
    transport.start();
    await transport.loading;
    const answer = fetch;
    chat.api.fetch = async (url, init) => {
      if (url.startsWith('/api/messages')) {
        await new Promise((resolve) => { finishMessages = resolve; });
      }
      return answer(url, init);
    };
    const socket = sockets[0];
    socket.connectNow();                     // load running
    await settle();
    socket.serverEvent('updated_model', { class: 'Message',
      model: message(9, 1, { updated_at: NOW + 90 }) });
    finishMessages();
    await transport.loading;
    assert.equal(chat.feeds.messages, `/api/messages?updated_since=${NOW + 9}&limit=500`);
    socket.serverEvent('updated_model', { class: 'Message',
      model: message(10, 1, { updated_at: NOW + 100 }) });
    assert.equal(chat.feeds.messages, `/api/messages?updated_since=${NOW + 99}&limit=500`);
    assert.deepEqual(chat.messages.pluck('id'), [1, 2, 9, 10]);
  });
});

describe('SocketTransport: connection state', () => {
  beforeEach(() => mock.timers.enable({ apis: ['setTimeout'] }));
  afterEach(() => mock.timers.reset());

  it('reports the socket going down and coming back', async () => {
    const { transport, sockets, connection } = setup(routes());
    transport.start();
    await transport.loading;
    assert.deepEqual(connection, [true]);   // nothing known yet: not "down"
    sockets[0].serverEvent('connect_error', new Error('xhr poll error'));
    assert.deepEqual(connection, [true, false]);
    sockets[0].connectNow();
    assert.deepEqual(connection, [true, false, true]);
  });

  it('connects again itself when the server closed the connection on purpose', () => {
    const { transport, sockets } = setup(routes());
    transport.start();
    const socket = sockets[0];
    socket.connectNow();
    socket.drop('transport close');          // socket.io-client reconnects
    mock.timers.tick(60000);
    assert.equal(socket.connectCalls, 0);
    socket.drop('io server disconnect');     // it does not
    mock.timers.tick(999);
    assert.equal(socket.connectCalls, 0);
    mock.timers.tick(1);
    assert.equal(socket.connectCalls, 1);
    socket.active = false;                   // refused connection
    socket.serverEvent('connect_error', new Error('refused'));
    mock.timers.tick(1000);
    assert.equal(socket.connectCalls, 2);
  });

  it('tries a failed load again with growing pauses, and says so', async () => {
    let failing = true;
    const answers = routes();
    const { fetch, transport, sockets, connection } = setup({
      'GET /api/users': (call) => (failing ? [503, { error: 'down' }]
        : answers['GET /api/users'](call)),
      'GET /api/messages': answers['GET /api/messages'],
    }, { retryInterval: 1000, maxRetryInterval: 4000 });
    transport.start();
    sockets[0].connectNow();
    await transport.loading;
    assert.deepEqual(connection, [true, false]);
    const attempts = () => fetch.calls.filter(
      (call) => call.url.startsWith('/api/users?online')).length;
    assert.equal(attempts(), 1);
    for (const [pause, expected] of [[1000, 2], [2000, 3], [4000, 4], [4000, 5]]) {
      mock.timers.tick(pause - 1);
      assert.equal(attempts(), expected - 1);
      mock.timers.tick(1);
      await transport.loading;
      assert.equal(attempts(), expected);
    }
    failing = false;
    mock.timers.tick(4000);
    await transport.loading;
    assert.deepEqual(connection, [true, false, true]);
    mock.timers.tick(60000);
    assert.equal(attempts(), 6);
  });

  it('stop() closes the socket and forgets its events', async () => {
    const { chat, transport, sockets } = setup(routes());
    transport.start();
    await transport.loading;
    const socket = sockets[0];
    transport.stop();
    assert.equal(socket.disconnected, true);
    socket.serverEvent('updated_model', { class: 'Message', model: message(5, 1) });
    assert.equal(chat.messages.get(5), undefined);
    transport.start();                       // a new socket
    assert.equal(sockets.length, 2);
  });
});

describe('SocketTransport: pings and posts', () => {
  beforeEach(() => mock.timers.enable({ apis: ['setTimeout'] }));
  afterEach(() => mock.timers.reset());

  it('pings with the token, only while logged in and connected', async () => {
    const { chat, fetch, transport, sockets } = setup(routes());
    transport.start();
    const socket = sockets[0];
    await transport.ping();                  // not connected, logged out
    socket.connectNow();                     // logged out: no ping
    chat.remember(TOKEN, 'a');
    await transport.ping();
    socket.drop();
    await transport.ping();                  // not connected: none
    socket.connectNow();                     // pinged on every connection
    assert.deepEqual(socket.sent('ping_user'),
      [['ping_user', TOKEN], ['ping_user', TOKEN]]);
    assert.equal(fetch.calls.filter((c) => c.method === 'PUT').length, 0);
  });

  it('expired_token logs out', () => {
    const { chat, transport, sockets } = setup(routes());
    transport.start();
    chat.remember(TOKEN, 'a');
    sockets[0].serverEvent('expired_token');
    assert.equal(chat.session.isLoggedIn(), false);
  });

  it('posts with post_message and the token, done when acknowledged', async () => {
    const { chat, fetch, transport, sockets } = setup(routes());
    transport.start();
    const socket = sockets[0];
    socket.connectNow();
    chat.remember(TOKEN, 'a');
    let done = false;
    const posting = transport.postMessage('hello *you*').then(() => {
      done = true;
    });
    const [[event, data, token, ack]] = socket.sent('post_message');
    assert.equal(event, 'post_message');
    assert.deepEqual(data, { source: 'hello *you*' });
    assert.equal(token, TOKEN);
    await settle();
    assert.equal(done, false);
    ack();
    await posting;
    assert.equal(done, true);
    assert.equal(fetch.calls.filter((c) => c.method === 'POST').length, 0);
  });

  it('a post refused with expired_token rejects with a 401', async () => {
    const { chat, transport, sockets } = setup(routes());
    transport.start();
    const socket = sockets[0];
    socket.connectNow();
    chat.remember(TOKEN, 'a');
    const posting = transport.postMessage('hi');
    socket.serverEvent('expired_token');
    socket.sent('post_message')[0][3]();
    await assert.rejects(posting, { name: 'ApiError', status: 401 });
    assert.equal(chat.session.isLoggedIn(), false);
  });

  it('a post fails at once when not connected, or after no answer', async () => {
    const { chat, transport, sockets } = setup(routes(), { postTimeout: 5000 });
    transport.start();
    const socket = sockets[0];
    chat.remember(TOKEN, 'a');
    await assert.rejects(transport.postMessage('hi'), { status: 0 });
    assert.deepEqual(socket.sent('post_message'), []);
    socket.connectNow();
    const posting = transport.postMessage('hi');
    mock.timers.tick(5000);
    await assert.rejects(posting, { status: 0, message: /No answer/ });
    chat.forget();
    await assert.rejects(transport.postMessage('hi'), { status: 401 });
  });
});

describe('page configuration', () => {
  function page(text) {
    return { getElementById: (id) => (id === 'microflack-config'
      ? { textContent: text } : null) };
  }

  it('reads the settings block, with defaults', () => {
    assert.deepEqual(readConfig(page('{"socketio": true, "version": "1.1.0", "ping_interval": 5}')),
      { socketio: true, version: '1.1.0', ping_interval: 5 });
    assert.deepEqual(readConfig(page('not json')),
      { socketio: false, version: '', ping_interval: 30 });
    assert.equal(readConfig(page('{"ping_interval": -1}')).ping_interval, 30);
    assert.equal(readConfig(page('{"ping_interval": "5"}')).ping_interval, 30);
  });

  it('picks the Socket.IO transport when asked and socket.io-client is there', () => {
    const chat = new Chat({ fetch: fakeFetch({}), storage: memoryStorage() });
    const warn = mock.method(console, 'warn', () => {});
    try {
      assert.ok(makeTransport(chat, { socketio: false }) instanceof PollingTransport);
      assert.ok(makeTransport(chat, { socketio: true }) instanceof PollingTransport);
      assert.equal(warn.mock.callCount(), 1);   // no window.io here
      globalThis.io = (opts) => new FakeSocket(opts);
      const transport = makeTransport(chat, { socketio: true });
      assert.ok(transport instanceof SocketTransport);
      assert.equal(transport.io, globalThis.io);
    } finally {
      delete globalThis.io;
      warn.mock.restore();
    }
  });
});
