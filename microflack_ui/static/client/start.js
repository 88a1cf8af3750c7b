// Reads the page's configuration and wires the parts together. Importing
// it does nothing; main.js, the page's entry, calls start().

import { Chat } from './chat.js';
import { ComposerView } from './composer-view.js';
import { MessageListView } from './message-list-view.js';
import { pageSizeFor } from './paging.js';
import { PollingTransport } from './polling-transport.js';
import { Poller } from './poller.js';
import { SessionView } from './session-view.js';
import { PING_INTERVAL } from './settings.js';
import { SocketTransport } from './socket-transport.js';
import { StatusView } from './status-view.js';
import { UserListView } from './user-list-view.js';

/** The settings the server rendered into the page. */
export function readConfig(document) {
  const defaults = { socketio: false, version: '',
    ping_interval: PING_INTERVAL / 1000 };
  const block = document.getElementById('microflack-config');
  let config;
  try {
    config = Object.assign(defaults, JSON.parse(block.textContent));
  } catch (error) {
    return defaults;
  }
  if (!(typeof config.ping_interval === 'number' &&
        config.ping_interval > 0)) {
    config.ping_interval = PING_INTERVAL / 1000;
  }
  return config;
}

/** The Socket.IO transport when the page asks for it and loaded
 * socket.io-client (window.io), else polling. */
export function makeTransport(chat, config) {
  if (config.socketio && typeof globalThis.io === 'function') {
    return new SocketTransport(chat, { io: globalThis.io });
  }
  if (config.socketio) {
    globalThis.console.warn('socket.io-client is missing; polling instead');
  }
  return new PollingTransport(chat);
}

/** Starts the page: the chat, its transport, the pinger and the views.
 * Returns them ({chat, transport, pinger, messageList}). */
export function start() {
  const config = readConfig(globalThis.document);
  globalThis.MICROFLACK = config;

  const chat = new Chat();
  const transport = makeTransport(chat, config);

  // While logged in, tell the users service every 30 s (the page's
  // ping_interval) that we are here; a new token is announced at once.
  const pinger = new Poller(() => transport.ping(),
    { interval: config.ping_interval * 1000 });
  chat.session.on('change:token', function () {
    pinger.stop();
    if (chat.session.isLoggedIn()) {
      pinger.start();
    }
  });
  chat.restore();

  const byId = (id) => globalThis.document.getElementById(id);
  const messageList = new MessageListView({ el: byId('message-list'),
    messages: byId('messages'), status: byId('history-status'),
    empty: byId('no-messages'), notice: byId('new-messages'),
    collection: chat.messages, chat });
  new UserListView({ el: '#user-list', collection: chat.users, chat });
  new SessionView({ el: globalThis.document.body, chat }).render();
  // The first page fills the list (its height once the right form
  // shows below it).
  chat.pageSize = pageSizeFor(messageList.el.clientHeight);
  new ComposerView({ el: '#composer', chat, transport, messageList });
  new StatusView({ el: '#connection-status', chat });

  transport.start();
  return { chat, transport, pinger, messageList };
}
