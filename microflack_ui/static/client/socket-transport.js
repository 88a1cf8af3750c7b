// The Socket.IO transport (the default): see SocketTransport below, and
// polling-transport.js for what a transport is.

import { ApiError } from './api.js';
import { backoff } from './poller.js';
import {
  MAX_RETRY_INTERVAL, POLL_INTERVAL, POST_TIMEOUT, SOCKETIO_PATH,
} from './settings.js';

/** The chat's list (changes feed) each pushed class belongs to. */
const PUSHED_LISTS = { User: 'users', Message: 'messages' };

/**
 * Keeps the chat up to date through the Socket.IO service (SPEC
 * section 5), on the page's own origin at /socket.io:
 * - loads the first pages through the REST API once when started,
 *   then applies the `updated_model` pushes ({class, model});
 * - after every (re)connection (a socketio instance restarted, say)
 *   loads what changed meanwhile: the changes feeds, from the newest
 *   update pushed, minus a second (Chat.refresh, Chat.advanceFeed);
 * - emits `ping_user` with the token after every (re)connection and on
 *   ping() (the page's pinger: right after login, then every 30 s);
 * - posts with `post_message`, which the server acknowledges once the
 *   messages service has answered;
 * - forgets the session on `expired_token` (REST 401s still do too);
 * - reports the socket's state as the chat's 'connection' events (a
 *   load that keeps failing counts as not connected too).
 * socket.io-client reconnects by itself, with growing pauses.
 *
 * options.io           socket.io-client's io() (window.io by default;
 *                      the unit tests give a fake socket)
 * options.path         the Socket.IO path (/socket.io)
 * options.postTimeout  ms to wait for the acknowledgement of a post
 * options.retryInterval, options.maxRetryInterval
 *                      pauses before trying a failed load again
 * options.timers       setTimeout/clearTimeout (the global ones)
 */
export class SocketTransport {
  constructor(chat, options) {
    const opts = options || {};
    this.chat = chat;
    this.io = opts.io || globalThis.io;
    this.path = opts.path || SOCKETIO_PATH;
    this.postTimeout = opts.postTimeout || POST_TIMEOUT;
    this.retryInterval = opts.retryInterval || POLL_INTERVAL;
    this.maxRetryInterval = Math.max(
      opts.maxRetryInterval || MAX_RETRY_INTERVAL, this.retryInterval);
    this.timers = opts.timers || globalThis;
    this.socket = null;
    this.socketUp = null;      // null until the first (dis)connection
    this.connections = 0;      // connections so far
    // Pushes move the changes feeds only once the load that followed
    // the current connection is done: until then, changes made while
    // the socket was down may still be older than the pushes.
    this.synced = false;
    this.loading = null;       // the load running, if any
    this.loadAgain = false;    // one more load was asked for meanwhile
    this.loadFailures = 0;
    this.loadError = null;
    this.retryTimer = null;
  }

  start() {
    if (this.socket) {
      return;
    }
    const socket = this.io({ path: this.path });
    this.socket = socket;
    socket.on('connect', () => this.onConnect());
    socket.on('disconnect', (reason) => this.onDisconnect(reason));
    socket.on('connect_error', (error) => this.onConnectError(error));
    socket.on('updated_model', (data) => this.onUpdatedModel(data));
    socket.on('expired_token', () => this.onExpiredToken());
    socket.on('resync', () => this.onResync());
    this.load();    // at once, even before the socket is connected
  }

  stop() {
    const socket = this.socket;
    this.socket = null;
    this.synced = false;
    this.cancelRetry();
    if (socket) {
      socket.off();
      socket.disconnect();
    }
  }

  // --- the socket's events ---

  onConnect() {
    this.socketUp = true;
    this.connections += 1;
    this.synced = false;
    this.ping();    // tells this instance who we are (for disconnect)
    this.load();    // what changed while we were not connected
    this.updateStatus();
  }

  onDisconnect(reason) {
    this.socketUp = false;
    this.synced = false;
    this.updateStatus();
    if (reason === 'io server disconnect') {
      // Closed by the server on purpose: socket.io-client does not
      // come back by itself then.
      this.reconnectLater();
    }
  }

  onConnectError(error) {
    this.socketUp = false;
    this.updateStatus(error);
    if (this.socket && this.socket.active === false) {
      this.reconnectLater();   // refused, not retried by the client
    }
  }

  onUpdatedModel(data) {
    if (!data || typeof data !== 'object' || !data.model ||
        typeof data.model !== 'object') {
      return;
    }
    this.chat.applyUpdate(data.class, data.model);
    const list = PUSHED_LISTS[data.class];
    if (list && this.synced) {
      this.chat.advanceFeed(list, data.model.updated_at);
    }
  }

  onExpiredToken() {
    this.chat.forget();
  }

  /** The server says pushes may have been lost (Redis was away): what
   * changed meanwhile comes from the changes feeds, as after a
   * reconnection. */
  onResync() {
    this.synced = false;
    this.load();
  }

  reconnectLater() {
    const socket = this.socket;
    this.timers.setTimeout(() => {
      if (socket === this.socket && !socket.connected) {
        socket.connect();
      }
    }, this.retryInterval);
  }

  updateStatus(error) {
    const up = this.socketUp !== false && !this.loadError;
    this.chat.setConnected(up, up ? null : (this.loadError || error));
  }

  // --- loading through the REST API ---

  /** Brings the lists up to date. One load at a time: a load asked
   * for meanwhile runs right after. A failed load is tried again
   * after a pause that grows while it keeps failing. */
  load() {
    if (this.loading) {
      this.loadAgain = true;
      return this.loading;
    }
    this.cancelRetry();
    this.loading = this.runLoads().finally(() => {
      this.loading = null;
    });
    return this.loading;
  }

  async runLoads() {
    let unauthorized = 0;
    do {
      this.loadAgain = false;
      const connection = this.connections;
      try {
        await this.chat.refresh();
        this.loadFailures = 0;
        this.loadError = null;
        if (this.socketUp && connection === this.connections) {
          this.synced = true;
        }
      } catch (error) {
        if (error.status === 401 && unauthorized < 1) {
          // The token was refused and forgotten: load without it.
          unauthorized += 1;
          this.loadAgain = true;
          continue;
        }
        this.loadFailures += 1;
        this.loadError = error;
        this.loadAgain = false;   // the retry will do
        this.scheduleRetry();
      }
    } while (this.loadAgain && this.socket);
    this.updateStatus();
  }

  scheduleRetry() {
    if (!this.socket) {
      return;
    }
    const delay = backoff(this.retryInterval, this.loadFailures,
      this.maxRetryInterval);
    this.retryTimer = this.timers.setTimeout(() => {
      this.retryTimer = null;
      this.load();
    }, delay);
  }

  cancelRetry() {
    if (this.retryTimer !== null) {
      this.timers.clearTimeout(this.retryTimer);
      this.retryTimer = null;
    }
  }

  // --- what the page sends ---

  /** `ping_user` with the token, if logged in and connected (a ping
   * follows every connection anyway). */
  ping() {
    const token = this.chat.session.get('token');
    if (token && this.socket && this.socket.connected) {
      this.socket.emit('ping_user', token);
    }
    return Promise.resolve();
  }

  /** `post_message`; resolves once the server acknowledged it. The
   * message itself arrives as a push. Rejects with an ApiError: 0
   * when not connected or unanswered, 401 when the server answered
   * with `expired_token` (logged out). */
  postMessage(source) {
    const token = this.chat.session.get('token');
    const socket = this.socket;
    if (!token) {
      return Promise.reject(new ApiError(401, 'Not logged in.', null));
    }
    if (!socket || !socket.connected) {
      return Promise.reject(
        new ApiError(0, 'The server cannot be reached.', null));
    }
    return new Promise((resolve, reject) => {
      const timer = this.timers.setTimeout(() => {
        reject(new ApiError(0, 'No answer from the server.', null));
      }, this.postTimeout);
      socket.emit('post_message', { source }, token, () => {
        this.timers.clearTimeout(timer);
        if (this.chat.session.get('token') === token) {
          resolve(null);
        } else {   // expired_token came first: not posted
          reject(new ApiError(401, 'Logged out.', null));
        }
      });
    });
  }
}
