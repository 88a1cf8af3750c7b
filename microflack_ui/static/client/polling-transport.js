// The polling transport (UI_SOCKETIO=0). A transport is how updates
// arrive and posts and pings leave; both transports have start(),
// stop(), postMessage(source) and ping() (socket-transport.js is the
// other one).

import { Poller } from './poller.js';
import { MAX_RETRY_INTERVAL, POLL_INTERVAL } from './settings.js';

/** Keeps the chat up to date by polling the REST API every second
 * (the first pages, then the changes feeds); posts and pings are plain
 * REST requests. */
export class PollingTransport {
  constructor(chat, options) {
    const opts = options || {};
    this.chat = chat;
    this.poller = new Poller(() => this.poll(), {
      interval: opts.interval || POLL_INTERVAL,
      maxInterval: opts.maxInterval || MAX_RETRY_INTERVAL,
      timers: opts.timers,
      onSuccess: () => chat.setConnected(true),
      onError: (error) => chat.setConnected(false, error),
    });
  }

  start() {
    this.poller.start();
  }

  stop() {
    this.poller.stop();
  }

  async poll() {
    try {
      await this.chat.refresh();
    } catch (error) {
      // A rejected token: the chat has logged out, the next poll goes
      // without it. Not a connection problem.
      if (error.status !== 401) {
        throw error;
      }
    }
  }

  postMessage(source) {
    return this.chat.postMessage(source);
  }

  ping() {
    return this.chat.pingUser();
  }
}
