/*
 * MicroFlack chat client (SPEC section 4, "ui").
 *
 * Everybody sees the user list (with online state) and the messages of the
 * last 24 hours; logging in (registering a new nickname on the way) opens
 * the post box. All data comes from the REST API behind the load balancer
 * (/api/users, /api/tokens, /api/messages), on the page's own origin.
 *
 * Layout of this file:
 *   1. helpers          pure functions (Basic auth header, token claims,
 *                       merging updates by id, time formatting, ordering)
 *   2. Api              fetch wrapper: JSON in and out, Bearer token, 401
 *   3. Poller           runs a task again and again, never two at once
 *   4. models           User/Users, Message/Messages, Session
 *   5. Chat             the client's state and what it can do through the
 *                       REST API (log in and out, refresh, post, ping)
 *   6. transports       how updates arrive and posts and pings leave,
 *                       both with start(), stop(), postMessage(source)
 *                       and ping():
 *                       PollingTransport polls the REST API every second;
 *                       SocketTransport loads the lists once through the
 *                       REST API, then applies the Socket.IO service's
 *                       `updated_model` pushes (chat.applyUpdate) and
 *                       posts and pings through it (SPEC section 5).
 *   7. views            Backbone views bound to the elements of index.html
 *   8. start            reads the page's configuration and wires it all up
 *
 * The server renders its settings into <script id="microflack-config"
 * type="application/json">; they are exposed as window.MICROFLACK
 * ({socketio: bool, version: string, ping_interval: seconds}). With
 * `socketio`, the page also loads socket.io-client (window.io) before this
 * file.
 *
 * Safety: nicknames, errors and message sources are inserted as text only.
 * The one thing inserted as HTML is a message's `html`, which the messages
 * service has sanitised (and the page's Content-Security-Policy forbids
 * inline scripts anyway).
 *
 * DOM hooks (stable; browser tests drive the page through them):
 *   #login-form            shown while logged out; holds:
 *     #nickname, #password, #login-button
 *     #login-error         shown (as text) when logging in failed
 *   #session-info          shown while logged in; holds:
 *     #current-user        the logged-in nickname
 *     #logout-button
 *   #user-list .user[data-id]        one per user, online first, then by
 *                                    nickname; class .online or .offline,
 *                                    .me for the logged-in user
 *     .user .nickname
 *   #message-list .message[data-id]  oldest first, newest at the bottom;
 *                                    data-user-id; .mine for own messages
 *     .message .author     the author's nickname
 *     .message .time       <time datetime="ISO 8601">, readable text
 *     .message .body       the message's html (.pending while the server
 *                          has not rendered it: the source as text)
 *   #no-messages           shown while there is no message
 *   #post-form             shown while logged in; holds:
 *     #message-input       Enter sends, Shift+Enter starts a new line
 *     #post-button
 *   #post-error            shown when posting failed
 *   #connection-status     shown while the server cannot be reached
 *                          (Socket.IO mode: while the socket is down)
 *   window.MicroFlack.app  {chat, transport, pinger} of the running page
 *
 * Browser tests: the page's Content-Security-Policy forbids eval, which
 * Playwright's wait_for_function(<string>) relies on; give such tests a
 * context made with bypass_csp=True (selectors and evaluate() work anyway).
 */
(function (root, factory) {
  'use strict';
  if (typeof module === 'object' && module.exports) {
    // Node (the unit tests in tests/*.test.js): no DOM, no jQuery.
    module.exports = factory(root, require('underscore'),
      require('backbone'), null);
  } else {
    root.MicroFlack = factory(root, root._, root.Backbone, root.jQuery);
  }
})(typeof self !== 'undefined' ? self : globalThis,
  function (root, _, Backbone, $) {
    'use strict';

    const POLL_INTERVAL = 1000;         // ms between two polls
    const MAX_RETRY_INTERVAL = 10000;   // polls slow down to this on errors
    const PING_INTERVAL = 30000;        // ms between two "I am online" pings
    const STORAGE_KEY = 'microflack.session';
    const SOCKETIO_PATH = '/socket.io'; // where the Socket.IO service answers
    const POST_TIMEOUT = 10000;         // ms to wait for post_message's ack

    // ------------------------------------------------------------------
    // 1. Helpers (pure functions, unit-tested in Node)
    // ------------------------------------------------------------------

    /** `Authorization` value for HTTP Basic auth. The credentials are UTF-8
     * encoded first: btoa() alone only accepts Latin-1 characters. */
    function basicAuthHeader(nickname, password) {
      const bytes = new TextEncoder().encode(`${nickname}:${password}`);
      let binary = '';
      for (const byte of bytes) {
        binary += String.fromCharCode(byte);
      }
      return `Basic ${root.btoa(binary)}`;
    }

    /** The claims of a JWT ({user_id, exp}), or null if it is not one. The
     * signature is the server's business; the client only reads them. */
    function tokenClaims(token) {
      try {
        const payload = String(token).split('.')[1]
          .replace(/-/g, '+').replace(/_/g, '/');
        const padded = payload + '='.repeat((4 - payload.length % 4) % 4);
        const claims = JSON.parse(root.atob(padded));
        return claims && typeof claims === 'object' ? claims : null;
      } catch (error) {
        return null;
      }
    }

    /** Largest `updated_at` of a list of models (plain objects), or null. */
    function latestUpdate(items) {
      let latest = null;
      for (const item of items) {
        if (typeof item.updated_at === 'number' &&
            (latest === null || item.updated_at > latest)) {
          latest = item.updated_at;
        }
      }
      return latest;
    }

    /** The `updated_since` to ask for after having seen `latest`.
     * Timestamps are whole seconds, so more changes may land in the second
     * we last saw: ask again from the second before it. The few models seen
     * twice merge into themselves (by id), nothing is missed. */
    function updatedSince(latest) {
      return latest === null ? null : latest - 1;
    }

    /** Merges models (plain objects) into a Backbone collection by id.
     * A model is only replaced by a version at least as recent
     * (`updated_at`); with `onlyNew`, existing models are left alone (for
     * answers that may be older than what polling already brought, such as
     * a freshly posted message whose html is rendered later). */
    function mergeModels(collection, items, options) {
      const onlyNew = Boolean(options && options.onlyNew);
      const accepted = items.filter(function (item) {
        if (!item || item.id === undefined || item.id === null) {
          return false;
        }
        const existing = collection.get(item.id);
        if (!existing) {
          return true;
        }
        return !onlyNew && !(existing.get('updated_at') > item.updated_at);
      });
      collection.set(accepted, { add: true, merge: true, remove: false });
      return accepted.length;
    }

    /** Order of the user list: online users first, then by nickname. */
    function compareUsers(a, b) {
      if (Boolean(a.online) !== Boolean(b.online)) {
        return a.online ? -1 : 1;
      }
      const byName = String(a.nickname).localeCompare(
        String(b.nickname), undefined, { sensitivity: 'base' });
      return byName || a.id - b.id;
    }

    /** A message's time, readable: "14:05" today, "Mar 3, 14:05" this year,
     * "Mar 3, 2024, 14:05" before. `options` (locale, timeZone, now in ms)
     * are for the tests; the browser's own settings are the default. */
    function formatTime(timestamp, options) {
      const opts = options || {};
      const date = new Date(timestamp * 1000);
      const now = new Date(opts.now === undefined ? Date.now() : opts.now);
      const format = function (fields, when) {
        return new Intl.DateTimeFormat(opts.locale,
          Object.assign({ timeZone: opts.timeZone }, fields))
          .format(when || date);
      };
      const dayOf = function (when) {
        return format({ year: 'numeric', month: '2-digit',
          day: '2-digit' }, when);
      };
      const time = format({ hour: '2-digit', minute: '2-digit' });
      if (dayOf(date) === dayOf(now)) {
        return time;
      }
      const sameYear = format({ year: 'numeric' }) ===
        format({ year: 'numeric' }, now);
      const day = format(sameYear ? { month: 'short', day: 'numeric' }
        : { month: 'short', day: 'numeric', year: 'numeric' });
      return `${day}, ${time}`;
    }

    /** The full date and time, for a tooltip. */
    function formatFullTime(timestamp, options) {
      const opts = options || {};
      return new Intl.DateTimeFormat(opts.locale, {
        dateStyle: 'full', timeStyle: 'medium', timeZone: opts.timeZone,
      }).format(new Date(timestamp * 1000));
    }

    /** `url` with query parameters added (null/undefined ones left out). */
    function withQuery(url, params) {
      const query = new URLSearchParams();
      for (const [name, value] of Object.entries(params || {})) {
        if (value !== null && value !== undefined) {
          query.set(name, String(value));
        }
      }
      const text = query.toString();
      return text ? `${url}?${text}` : url;
    }

    // ------------------------------------------------------------------
    // 2. Api: every request to the server goes through here
    // ------------------------------------------------------------------

    /** A failed request: `status` is the HTTP status (0 when the server
     * could not be reached), `message` the server's `error` if it sent one. */
    class ApiError extends Error {
      constructor(status, message, body) {
        super(message);
        this.name = 'ApiError';
        this.status = status;
        this.body = body;
      }
    }

    class Api {
      /**
       * options.getToken()         the current token (or null)
       * options.onUnauthorized(t)  called when token t got a 401
       * options.fetch              window.fetch (replaceable in tests)
       */
      constructor(options) {
        this.getToken = options.getToken || function () { return null; };
        this.onUnauthorized = options.onUnauthorized || function () {};
        this.fetch = options.fetch || function (url, init) {
          return root.fetch(url, init);
        };
      }

      /**
       * Sends a request and resolves with the JSON answer (null if empty).
       * options.body   sent as JSON
       * options.query  query parameters
       * options.basic  an Authorization header value to send instead of
       *                the token (logging in)
       * options.token  the token to send instead of the current one (null:
       *                send none)
       */
      async request(method, url, options) {
        const opts = options || {};
        const headers = { Accept: 'application/json' };
        let token = null;
        if (opts.basic) {
          headers.Authorization = opts.basic;
        } else {
          token = opts.token !== undefined ? opts.token : this.getToken();
          if (token) {
            headers.Authorization = `Bearer ${token}`;
          }
        }
        const init = { method, headers, cache: 'no-store',
          credentials: 'same-origin' };
        if (opts.body !== undefined) {
          headers['Content-Type'] = 'application/json';
          init.body = JSON.stringify(opts.body);
        }

        let response;
        try {
          response = await this.fetch(withQuery(url, opts.query), init);
        } catch (error) {
          throw new ApiError(0, 'The server cannot be reached.', null);
        }
        let data = null;
        try {
          const text = await response.text();
          data = text ? JSON.parse(text) : null;
        } catch (error) {
          data = null;   // not JSON (a proxy's error page, say)
        }
        if (!response.ok) {
          const message = data && typeof data.error === 'string'
            ? data.error : `${response.status} ${response.statusText || ''}`.trim();
          if (response.status === 401 && token) {
            this.onUnauthorized(token);
          }
          throw new ApiError(response.status, message, data);
        }
        return data;
      }

      get(url, options) {
        return this.request('GET', url, options);
      }

      post(url, body, options) {
        return this.request('POST', url, Object.assign({ body }, options));
      }

      put(url, body, options) {
        return this.request('PUT', url, Object.assign({ body }, options));
      }

      delete(url, options) {
        return this.request('DELETE', url, options);
      }
    }

    // ------------------------------------------------------------------
    // 3. Poller: requests never pile up
    // ------------------------------------------------------------------

    /**
     * Calls `task` (a function returning a promise) right away, then again
     * `interval` ms after each run has finished, until stopped. After
     * failures the pause doubles, up to `maxInterval`.
     * options: interval, maxInterval, onSuccess(), onError(error), timers
     * (an object with setTimeout/clearTimeout; the global ones by default).
     */
    class Poller {
      constructor(task, options) {
        const opts = options || {};
        this.task = task;
        this.interval = opts.interval || POLL_INTERVAL;
        this.maxInterval = Math.max(opts.maxInterval || this.interval,
          this.interval);
        this.onSuccess = opts.onSuccess || function () {};
        this.onError = opts.onError || function () {};
        this.timers = opts.timers || root;
        this.running = false;
        this.failures = 0;
        this.timer = null;
        this.generation = 0;   // a run of a stopped poller schedules nothing
      }

      start() {
        if (this.running) {
          return;
        }
        this.running = true;
        this.failures = 0;
        this.generation += 1;
        this.run(this.generation);
      }

      stop() {
        this.running = false;
        this.generation += 1;
        if (this.timer !== null) {
          this.timers.clearTimeout(this.timer);
          this.timer = null;
        }
      }

      /** Pause before the next run. */
      delay() {
        if (!this.failures) {
          return this.interval;
        }
        return Math.min(this.interval * 2 ** this.failures, this.maxInterval);
      }

      async run(generation) {
        this.timer = null;
        try {
          await this.task();
          this.failures = 0;
          if (generation === this.generation) {
            this.onSuccess();
          }
        } catch (error) {
          this.failures += 1;
          if (generation === this.generation) {
            this.onError(error);
          }
        }
        if (this.running && generation === this.generation) {
          this.timer = this.timers.setTimeout(
            () => this.run(generation), this.delay());
        }
      }
    }

    // ------------------------------------------------------------------
    // 4. Models
    // ------------------------------------------------------------------

    const User = Backbone.Model.extend({});

    const Users = Backbone.Collection.extend({
      model: User,
      comparator: 'id',
    });

    const Message = Backbone.Model.extend({});

    /** Messages in the order they were written (editing keeps the place). */
    const Messages = Backbone.Collection.extend({
      model: Message,
      comparator: function (a, b) {
        return (a.get('created_at') - b.get('created_at')) ||
          (a.get('id') - b.get('id'));
      },
    });

    /** Who is logged in: {token, userId, nickname}, all null when nobody. */
    const Session = Backbone.Model.extend({
      defaults: { token: null, userId: null, nickname: null },

      isLoggedIn: function () {
        return Boolean(this.get('token'));
      },
    });

    /** sessionStorage, or nothing when the browser refuses it. */
    function sessionStorageOrNull() {
      try {
        return root.sessionStorage || null;
      } catch (error) {
        return null;
      }
    }

    // ------------------------------------------------------------------
    // 5. Chat: the state and the REST operations
    // ------------------------------------------------------------------

    /**
     * Events: the collections' and the session's own, plus
     *   'connection' (ok, error)   whether the last refresh worked
     */
    class Chat {
      /**
       * options.fetch    for the Api (tests)
       * options.storage  where the session is kept (sessionStorage)
       * options.now()    the time in ms (tests)
       */
      constructor(options) {
        const opts = options || {};
        _.extend(this, Backbone.Events);
        this.users = new Users();
        this.messages = new Messages();
        this.session = new Session();
        this.storage = opts.storage === undefined ? sessionStorageOrNull()
          : opts.storage;
        this.now = opts.now || Date.now;
        this.api = opts.api || new Api({
          fetch: opts.fetch,
          getToken: () => this.session.get('token'),
          onUnauthorized: (token) => this.forget(token),
        });
        // Where the last full or incremental list left off (updated_at).
        // Only list answers move them: a single model fetched in between
        // may be newer than changes the next poll still has to bring.
        this.cursors = { users: null, messages: null };
        this.pendingUsers = new Set();   // authors being fetched
        this.missingUsers = new Set();   // authors the server does not know
      }

      // --- session ---

      /** Picks up the session kept in this tab, if still valid. */
      restore() {
        let saved = null;
        try {
          saved = JSON.parse(this.storage && this.storage.getItem(STORAGE_KEY));
        } catch (error) {
          saved = null;
        }
        const claims = saved && tokenClaims(saved.token);
        if (claims && claims.exp * 1000 > this.now()) {
          this.session.set({ token: saved.token, userId: claims.user_id,
            nickname: saved.nickname });
        } else {
          this.forget();
        }
        return this.session.isLoggedIn();
      }

      remember(token, nickname) {
        const claims = tokenClaims(token) || {};
        this.session.set({ token, nickname,
          userId: claims.user_id === undefined ? null : claims.user_id });
        try {
          if (this.storage) {
            this.storage.setItem(STORAGE_KEY,
              JSON.stringify({ token, nickname }));
          }
        } catch (error) {
          // Storage full or refused: the session lasts as long as the page.
        }
      }

      /** Forgets the session; with `token`, only if that is still the one
       * in use (a late 401 of an old token must not log a new one out). */
      forget(token) {
        if (token && token !== this.session.get('token')) {
          return;
        }
        this.session.set(this.session.defaults);
        try {
          if (this.storage) {
            this.storage.removeItem(STORAGE_KEY);
          }
        } catch (error) {
          // nothing kept, nothing to forget
        }
      }

      /**
       * Registers the nickname (a 400 means it exists already), then asks
       * for a token with the credentials. Rejects with an Error whose
       * message can be shown to the user.
       */
      async login(nickname, password) {
        if (!nickname || !password) {
          throw new Error('Enter a nickname and a password.');
        }
        if (nickname.includes(':')) {
          throw new Error('A nickname cannot contain ":".');
        }
        let registerError = null;
        try {
          await this.api.post('/api/users', { nickname, password },
            { token: null });
        } catch (error) {
          if (error.status !== 400) {
            registerError = error;   // maybe a passing problem; try anyway
          }
        }
        let answer;
        try {
          answer = await this.api.post('/api/tokens', undefined,
            { basic: basicAuthHeader(nickname, password) });
        } catch (error) {
          if (error.status === 401 && !registerError) {
            throw new Error('Wrong password for this nickname ' +
              '(or the nickname is taken by someone else).');
          }
          throw new Error(`Cannot log in: ${(registerError || error).message}`);
        }
        if (!answer || typeof answer.token !== 'string') {
          throw new Error('Cannot log in: unexpected answer from the server.');
        }
        this.remember(answer.token, nickname);
      }

      /** Logs out at once; then, with the old token, marks the user offline
       * and revokes the token (failures there change nothing here). */
      async logout() {
        const token = this.session.get('token');
        this.forget();
        if (!token) {
          return;
        }
        try {
          await this.api.delete('/api/users/me', { token });
        } catch (error) {
          // the token may have expired already: nothing to mark
        }
        try {
          await this.api.delete('/api/tokens', { token });
        } catch (error) {
          // an expired token needs no revocation
        }
      }

      // --- data ---

      /** Brings users and messages up to date (everything the first time,
       * then only what changed), then fetches authors not seen yet. Both
       * lists are awaited even when one fails, so that no request of this
       * refresh is still running when the next one starts. */
      async refresh() {
        const results = await Promise.allSettled([
          this.refreshList('users', '/api/users', this.users),
          this.refreshList('messages', '/api/messages', this.messages),
        ]);
        const failed = results.find((result) => result.status === 'rejected');
        if (failed) {
          throw failed.reason;
        }
        this.fetchUnknownAuthors();
      }

      /** GET a list ({"<name>": [...]}) changed since the cursor and merge
       * it into `collection`. */
      async refreshList(name, url, collection) {
        const data = await this.api.get(url, {
          query: { updated_since: updatedSince(this.cursors[name]) },
        });
        const items = (data && Array.isArray(data[name])) ? data[name] : [];
        mergeModels(collection, items);
        this.advanceCursor(name, latestUpdate(items));
      }

      /** Moves a list's cursor ('users' or 'messages') forward to
       * `updatedAt` (never back). Pushes move it too in Socket.IO mode:
       * after a reconnection, what was missed is asked for from there. */
      advanceCursor(name, updatedAt) {
        if (typeof updatedAt === 'number' &&
            (this.cursors[name] === null || updatedAt > this.cursors[name])) {
          this.cursors[name] = updatedAt;
        }
      }

      /** Applies one pushed model ({"class": "User"|"Message"}), as the
       * Socket.IO service sends them in `updated_model`. */
      applyUpdate(className, model) {
        if (className === 'User') {
          mergeModels(this.users, [model]);
        } else if (className === 'Message') {
          mergeModels(this.messages, [model]);
          this.fetchUnknownAuthors();
        }
      }

      /** GET /api/users/<id> for each author not in the user list; each
       * one once at a time, and never again once the server said 404. */
      fetchUnknownAuthors() {
        const ids = _.uniq(this.messages.pluck('user_id'));
        for (const id of ids) {
          if (id === undefined || id === null || this.users.get(id) ||
              this.pendingUsers.has(id) || this.missingUsers.has(id)) {
            continue;
          }
          this.pendingUsers.add(id);
          this.api.get(`/api/users/${encodeURIComponent(id)}`)
            .then((user) => {
              mergeModels(this.users, [user], { onlyNew: true });
            })
            .catch((error) => {
              if (error.status === 404) {
                this.missingUsers.add(id);
                this.trigger('missing-user', id);
              }
            })
            .finally(() => this.pendingUsers.delete(id));
        }
      }

      /** POST /api/messages; the answer joins the list at once. */
      async postMessage(source) {
        const message = await this.api.post('/api/messages', { source });
        if (message) {
          mergeModels(this.messages, [message], { onlyNew: true });
        }
        return message;
      }

      /** PUT /api/users/me: tells the users service we are still here. */
      async pingUser() {
        if (this.session.isLoggedIn()) {
          await this.api.put('/api/users/me');
        }
      }

      setConnected(ok, error) {
        if (ok !== this.connected) {
          this.connected = ok;
          this.trigger('connection', ok, error);
        }
      }
    }

    // ------------------------------------------------------------------
    // 6. Transports
    // ------------------------------------------------------------------

    /** Keeps the chat up to date by polling the REST API every second;
     * posts and pings are plain REST requests. */
    class PollingTransport {
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

    /** The chat's list (cursor) each pushed class belongs to. */
    const PUSHED_LISTS = { User: 'users', Message: 'messages' };

    /**
     * Keeps the chat up to date through the Socket.IO service (SPEC
     * section 5), on the page's own origin at /socket.io:
     * - loads users and messages through the REST API once when started,
     *   then applies the `updated_model` pushes ({class, model});
     * - after every (re)connection (a socketio instance restarted, say)
     *   loads again what changed meanwhile: `updated_since` the newest
     *   update seen, minus a second (Chat.refresh and its cursors);
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
    class SocketTransport {
      constructor(chat, options) {
        const opts = options || {};
        this.chat = chat;
        this.io = opts.io || root.io;
        this.path = opts.path || SOCKETIO_PATH;
        this.postTimeout = opts.postTimeout || POST_TIMEOUT;
        this.retryInterval = opts.retryInterval || POLL_INTERVAL;
        this.maxRetryInterval = Math.max(
          opts.maxRetryInterval || MAX_RETRY_INTERVAL, this.retryInterval);
        this.timers = opts.timers || root;
        this.socket = null;
        this.socketUp = null;      // null until the first (dis)connection
        this.connections = 0;      // connections so far
        // Pushes move the cursors only once the load that followed the
        // current connection is done: until then, changes made while the
        // socket was down may still be older than the pushes.
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
          this.chat.advanceCursor(list, data.model.updated_at);
        }
      }

      onExpiredToken() {
        this.chat.forget();
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
        const delay = Math.min(
          this.retryInterval * 2 ** (this.loadFailures - 1),
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

    // ------------------------------------------------------------------
    // 7. Views (jQuery; text goes in with .text(), never as HTML)
    // ------------------------------------------------------------------

    /** #user-list: one .user per user, with their online state. */
    const UserListView = Backbone.View.extend({
      initialize: function (options) {
        this.chat = options.chat;
        // Many events arrive per poll; draw once after them.
        this.scheduleRender = _.debounce(this.render.bind(this), 0);
        this.listenTo(this.collection, 'update reset sort change',
          this.scheduleRender);
        this.listenTo(this.chat.session, 'change:userId',
          this.scheduleRender);
      },

      render: function () {
        const me = this.chat.session.get('userId');
        const users = this.collection.toJSON().sort(compareUsers);
        const items = users.map(function (user) {
          const online = Boolean(user.online);
          return $('<li class="user">')
            .attr('data-id', user.id)
            .toggleClass('online', online)
            .toggleClass('offline', !online)
            .toggleClass('me', user.id === me)
            .attr('title', online ? 'online' : 'offline')
            .append($('<span class="nickname">').text(user.nickname));
        });
        this.$el.empty().append(items);
        return this;
      },
    });

    /** One .message: author, time and the server's html. */
    const MessageView = Backbone.View.extend({
      tagName: 'div',
      className: 'message',

      initialize: function (options) {
        this.chat = options.chat;
      },

      authorName: function () {
        const id = this.model.get('user_id');
        const user = this.chat.users.get(id);
        if (user) {
          return user.get('nickname');
        }
        return this.chat.missingUsers.has(id) ? 'unknown user' : '…';
      },

      render: function () {
        const message = this.model.toJSON();
        const when = new Date(message.created_at * 1000);
        const $time = $('<time class="time">')
          .attr('datetime', when.toISOString())
          .attr('title', formatFullTime(message.created_at))
          .text(formatTime(message.created_at));
        const $meta = $('<div class="meta">').append(
          $('<span class="author">').text(this.authorName()), $time);
        const $body = $('<div class="body">');
        if (typeof message.html === 'string' && message.html !== '') {
          $body.html(message.html);   // sanitised by the messages service
          $body.find('a').each(function () {
            // Links open beside the chat; only web links are followed.
            if (/^https?:$/.test(this.protocol)) {
              $(this).attr({ target: '_blank',
                rel: 'nofollow noopener noreferrer' });
            } else {
              $(this).removeAttr('href');
            }
          });
        } else {
          $body.addClass('pending').text(message.source || '');
        }
        this.$el
          .attr('data-id', message.id)
          .attr('data-user-id', message.user_id)
          .toggleClass('mine',
            message.user_id === this.chat.session.get('userId'))
          .empty()
          .append($meta, $body);
        return this;
      },
    });

    /** #message-list: messages oldest first; stays scrolled to the bottom
     * unless the reader has scrolled up. */
    const MessageListView = Backbone.View.extend({
      initialize: function (options) {
        this.chat = options.chat;
        this.views = new Map();   // message id -> MessageView
        this.$empty = this.$('#no-messages');
        this.listenTo(this.collection, 'add', this.addMessage);
        this.listenTo(this.collection, 'change', this.changeMessage);
        this.listenTo(this.collection, 'remove', this.removeMessage);
        this.listenTo(this.collection, 'reset', this.render);
        this.listenTo(this.chat.users, 'add change:nickname',
          this.authorChanged);
        this.listenTo(this.chat, 'missing-user', this.authorChanged);
        this.listenTo(this.chat.session, 'change:userId', this.renderAll);
      },

      nearBottom: function () {
        const el = this.el;
        return el.scrollHeight - el.scrollTop - el.clientHeight < 48;
      },

      scrollToBottom: function () {
        this.el.scrollTop = this.el.scrollHeight;
      },

      /** Runs `change` (a DOM update) and keeps the list at the bottom if
       * it was there before. */
      keepingBottom: function (change) {
        const stick = this.nearBottom();
        change();
        this.$empty.prop('hidden', this.collection.length > 0);
        if (stick) {
          this.scrollToBottom();
        }
      },

      addMessage: function (model) {
        const view = new MessageView({ model, chat: this.chat });
        this.views.set(model.id, view);
        view.render();
        this.keepingBottom(() => {
          // Before the first later message already shown, else at the end.
          const index = this.collection.indexOf(model);
          for (let i = index + 1; i < this.collection.length; i++) {
            const next = this.views.get(this.collection.at(i).id);
            if (next) {
              next.$el.before(view.el);
              return;
            }
          }
          this.$el.append(view.el);
        });
      },

      changeMessage: function (model) {
        const view = this.views.get(model.id);
        if (view) {
          this.keepingBottom(() => view.render());
        }
      },

      removeMessage: function (model) {
        const view = this.views.get(model.id);
        if (view) {
          view.remove();
          this.views.delete(model.id);
        }
      },

      authorChanged: function (userOrId) {
        const id = userOrId && userOrId.id !== undefined ? userOrId.id
          : userOrId;
        this.keepingBottom(() => {
          for (const view of this.views.values()) {
            if (view.model.get('user_id') === id) {
              view.render();
            }
          }
        });
      },

      renderAll: function () {
        this.keepingBottom(() => {
          for (const view of this.views.values()) {
            view.render();
          }
        });
      },

      render: function () {
        for (const view of this.views.values()) {
          view.remove();
        }
        this.views.clear();
        this.collection.each((model) => this.addMessage(model));
        this.$empty.prop('hidden', this.collection.length > 0);
        this.scrollToBottom();
        return this;
      },
    });

    /** #login-form (logged out) and #session-info (logged in). */
    const SessionView = Backbone.View.extend({
      events: {
        'submit #login-form': 'login',
        'click #logout-button': 'logout',
      },

      initialize: function (options) {
        this.chat = options.chat;
        this.$form = this.$('#login-form');
        this.$nickname = this.$('#nickname');
        this.$password = this.$('#password');
        this.$button = this.$('#login-button');
        this.$error = this.$('#login-error');
        this.$info = this.$('#session-info');
        this.$postForm = this.$('#post-form');
        this.listenTo(this.chat.session, 'change', this.render);
      },

      render: function () {
        const loggedIn = this.chat.session.isLoggedIn();
        this.$form.prop('hidden', loggedIn);
        this.$info.prop('hidden', !loggedIn);
        this.$postForm.prop('hidden', !loggedIn);
        this.$('#current-user').text(this.chat.session.get('nickname') || '');
        if (loggedIn) {
          this.showError(null);
          this.$password.val('');
          this.$('#message-input').trigger('focus');
        }
        return this;
      },

      showError: function (text) {
        this.$error.text(text || '').prop('hidden', !text);
      },

      login: async function (event) {
        event.preventDefault();
        this.showError(null);
        this.$button.prop('disabled', true);
        try {
          await this.chat.login(this.$nickname.val().trim(),
            this.$password.val());
        } catch (error) {
          this.showError(error.message);
          this.$password.trigger('focus').trigger('select');
        } finally {
          this.$button.prop('disabled', false);
        }
      },

      logout: function () {
        this.chat.logout();
      },
    });

    /** #post-form: the post box. */
    const ComposerView = Backbone.View.extend({
      events: {
        'submit #post-form': 'send',
        'keydown #message-input': 'keydown',
      },

      initialize: function (options) {
        this.chat = options.chat;
        this.transport = options.transport;
        this.messageList = options.messageList;
        this.$input = this.$('#message-input');
        this.$button = this.$('#post-button');
        this.$error = this.$('#post-error');
        this.listenTo(this.chat.session, 'change:token', this.clearError);
      },

      keydown: function (event) {
        const composing = event.originalEvent &&
          event.originalEvent.isComposing;
        if (event.key === 'Enter' && !event.shiftKey && !composing) {
          this.send(event);
        }
      },

      clearError: function () {
        this.$error.text('').prop('hidden', true);
      },

      send: async function (event) {
        event.preventDefault();
        const source = this.$input.val();
        if (!source.trim() || this.$button.prop('disabled')) {
          return;
        }
        this.clearError();
        this.$button.prop('disabled', true);
        try {
          await this.transport.postMessage(source);
          this.$input.val('');
          this.messageList.scrollToBottom();
        } catch (error) {
          if (error.status !== 401) {   // 401: logged out, form is gone
            this.$error.text(`Not sent: ${error.message}`).prop('hidden', false);
          }
        } finally {
          this.$button.prop('disabled', false);
          this.$input.trigger('focus');
        }
      },
    });

    /** #connection-status: shown while polls fail. */
    const StatusView = Backbone.View.extend({
      initialize: function (options) {
        this.listenTo(options.chat, 'connection', this.render);
      },

      render: function (ok, error) {
        const detail = error && error.status ? ` (${error.message})` : '';
        this.$el
          .text(ok ? '' : `Cannot reach the server${detail}; retrying…`)
          .prop('hidden', Boolean(ok));
        return this;
      },
    });

    // ------------------------------------------------------------------
    // 8. Start
    // ------------------------------------------------------------------

    /** The settings the server rendered into the page. */
    function readConfig(document) {
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
    function makeTransport(chat, config) {
      if (config.socketio && typeof root.io === 'function') {
        return new SocketTransport(chat, { io: root.io });
      }
      if (config.socketio) {
        root.console.warn('socket.io-client is missing; polling instead');
      }
      return new PollingTransport(chat);
    }

    function start() {
      const config = readConfig(root.document);
      root.MICROFLACK = config;

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

      const messageList = new MessageListView({ el: '#message-list',
        collection: chat.messages, chat });
      new UserListView({ el: '#user-list', collection: chat.users, chat });
      new SessionView({ el: root.document.body, chat }).render();
      new ComposerView({ el: '#composer', chat, transport, messageList });
      new StatusView({ el: '#connection-status', chat });

      transport.start();
      return { chat, transport, pinger };
    }

    const MicroFlack = {
      POLL_INTERVAL, PING_INTERVAL, MAX_RETRY_INTERVAL, STORAGE_KEY,
      SOCKETIO_PATH, POST_TIMEOUT,
      basicAuthHeader, tokenClaims, latestUpdate, updatedSince, mergeModels,
      compareUsers, formatTime, formatFullTime, withQuery,
      ApiError, Api, Poller,
      User, Users, Message, Messages, Session, Chat,
      PollingTransport, SocketTransport, makeTransport,
      UserListView, MessageView, MessageListView, SessionView, ComposerView,
      StatusView, readConfig, start,
    };

    if (root.document && $) {
      $(function () {
        MicroFlack.app = start();
      });
    }
    return MicroFlack;
  });
