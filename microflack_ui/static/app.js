/*
 * MicroFlack chat client (SPEC section 4, "ui").
 *
 * Everybody sees who is online and the chat, newest messages at the
 * bottom; logging in (registering a new nickname on the way) opens the
 * post box. All data comes from the REST API behind the load balancer
 * (/api/users, /api/tokens, /api/messages), on the page's own origin.
 *
 * The history can be long (a million messages), so the page never asks
 * for all of it (issue 14; the paging contract is the API's `_meta` and
 * `_links`):
 * - it loads the newest page of messages, as many as fit the list (20 to
 *   100), the users who are online, and then the authors of the messages
 *   it shows (GET /api/users?ids=..., one request for a page);
 * - scrolled near the top, it loads the next older page (the page's
 *   `next` link) and puts it above without moving what the reader sees;
 * - changes arrive as pushes (Socket.IO) or from the changes feeds (the
 *   pages' `updates` links, then each answer's `next`), followed page by
 *   page after every (re)connection or every second when polling; a
 *   client too far behind starts again from the newest page;
 * - a changed message older than the oldest one loaded is left alone (it
 *   comes in its current form when scrolled to).
 * An old messages service (during a rolling upgrade) ignores the paging
 * parameters and answers a plain list: it is then the whole list.
 *
 * Layout of this file:
 *   1. helpers          pure functions (Basic auth header, token claims,
 *                       merging updates by id, reading pages and links,
 *                       time formatting, ordering)
 *   2. Api              fetch wrapper: JSON in and out, Bearer token, 401
 *   3. Poller           runs a task again and again, never two at once
 *   4. models           User/Users, Message/Messages, Session
 *   5. Chat             the client's state and what it can do through the
 *                       REST API (log in and out, load pages, catch up
 *                       with the changes feeds, post, ping)
 *   6. transports       how updates arrive and posts and pings leave,
 *                       both with start(), stop(), postMessage(source)
 *                       and ping():
 *                       PollingTransport catches up every second;
 *                       SocketTransport loads once through the REST API,
 *                       then applies the Socket.IO service's
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
 *   #user-list .user[data-id]        one per user online (offline users
 *                                    are not listed), by nickname;
 *                                    class .online, .me for the
 *                                    logged-in user
 *     .user .nickname
 *   #message-list          the scrolling list; holds:
 *     #history-status      above the messages; data-state "loading"
 *                          (an older page is on its way: "Loading older
 *                          messages…"), "complete" (the beginning of the
 *                          chat is shown), "more" or "unknown" (empty)
 *     #messages .message[data-id]    oldest first, newest at the bottom
 *                                    (by id); data-user-id; .mine for own
 *                                    messages
 *       .message .author   the author's nickname
 *       .message .time     <time datetime="ISO 8601">, readable text
 *       .message .body     the message's html (.pending while the server
 *                          has not rendered it: the source as text)
 *     #no-messages         shown while the chat has no message
 *   #new-messages          button, shown when messages arrived below while
 *                          the reader is scrolled back; scrolls down
 *   #post-form             shown while logged in; holds:
 *     #message-input       Enter sends, Shift+Enter starts a new line
 *     #post-button
 *   #post-error            shown when posting failed
 *   #connection-status     shown while the server cannot be reached
 *                          (Socket.IO mode: while the socket is down)
 *   window.MicroFlack.app  {chat, transport, pinger, messageList} of the
 *                          running page
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

    // Paging (issue 14). The first page fills the list: its height over
    // the smallest height a message takes (a one-line message takes about
    // 60 px; 40 leaves room for small fonts), within these bounds.
    const FIRST_PAGE_MIN = 20;
    const FIRST_PAGE_MAX = 100;
    const MIN_MESSAGE_HEIGHT = 40;      // px
    // Older pages are larger: scrolling back asks less often.
    const OLDER_PAGE_SIZE = 50;
    // Who is online: one page (the server's largest).
    const ONLINE_PAGE_SIZE = 500;
    // Authors named in one GET /api/users?ids= (the server's largest page).
    const MAX_IDS = 500;
    // Pages of a changes feed followed in one round; a client further
    // behind starts again from the newest page.
    const MAX_CATCHUP_PAGES = 4;
    // A page waits this long (ms) for its authors' names before it shows
    // without them ("…" until they come).
    const AUTHORS_WAIT = 500;
    // Older pages load while the reader is this many screens from the top.
    const PREFETCH_SCREENS = 1;
    // The list sticks to the bottom when the reader is this close (px).
    const NEAR_BOTTOM = 48;

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

    /** Whether `item` can go into a collection (a model with an id). */
    function hasId(item) {
      return Boolean(item) && typeof item === 'object' &&
        item.id !== undefined && item.id !== null;
    }

    /** Merges models (plain objects) into a Backbone collection by id.
     * A model is only replaced by a version at least as recent
     * (`updated_at`); with `onlyNew`, existing models are left alone (for
     * answers that may be older than what polling already brought, such as
     * a freshly posted message whose html is rendered later). */
    function mergeModels(collection, items, options) {
      const onlyNew = Boolean(options && options.onlyNew);
      const accepted = items.filter(function (item) {
        if (!hasId(item)) {
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

    /** The users to list (plain objects): those online, in list order. */
    function onlineUsers(users) {
      return users.filter((user) => user.online).sort(compareUsers);
    }

    /** What a list answer holds, whether the server paged it or not:
     * {items, paged, more, next, updates, updatedSince}. An answer without
     * `_meta` (an old service, or a list that is not paged) is the whole
     * list: no more pages, no links. */
    function readPage(data, name) {
      const items = data && Array.isArray(data[name])
        ? data[name].filter(hasId) : [];
      const meta = data && data._meta && typeof data._meta === 'object'
        ? data._meta : null;
      const links = meta && data._links && typeof data._links === 'object'
        ? data._links : {};
      const link = (rel) => (typeof links[rel] === 'string' ? links[rel]
        : null);
      return {
        items,
        paged: meta !== null,
        more: Boolean(meta && meta.more),
        next: link('next'),
        updates: link('updates'),
        updatedSince: meta && typeof meta.updated_since === 'number'
          ? meta.updated_since : null,
      };
    }

    // Links are relative to the page's origin; URL needs a base to parse
    // them: this one is no address (and never asked for), so a relative
    // link stays relative.
    const LINK_BASE = 'link:/';

    /** `link` with query parameters set (null ones removed), e.g. a `next`
     * link with another page size. */
    function withParams(link, params) {
      const url = new URL(link, LINK_BASE);
      for (const [name, value] of Object.entries(params)) {
        if (value === null || value === undefined) {
          url.searchParams.delete(name);
        } else {
          url.searchParams.set(name, String(value));
        }
      }
      return url.protocol === 'link:' ? url.pathname + url.search : url.href;
    }

    /** A number in `link`'s query (e.g. its `updated_since`), or null. */
    function linkNumber(link, name) {
      const value = new URL(link, LINK_BASE).searchParams.get(name);
      const number = value === null || value === '' ? NaN : Number(value);
      return Number.isFinite(number) ? number : null;
    }

    /** Where a changes feed continues after the answer `page` to `url`:
     * the answer's `next`; for an old service's plain list, `url` asked
     * from the newest change it brought (as before paging existed). */
    function nextFeedLink(url, page) {
      if (page.paged) {
        return page.next || url;
      }
      const latest = latestUpdate(page.items);
      return latest === null ? url
        : withParams(url, { updated_since: updatedSince(latest), after: null,
          limit: null });
    }

    /** Where a list's changes feed starts after its first page (the
     * answer `page` to `url`): the page's `updates`; for an old service's
     * plain list, `url` asked from the newest change it brought (or the
     * whole list again while it brought none, as before paging existed). */
    function firstFeedLink(url, page) {
      if (page.updates) {
        return page.updates;
      }
      const latest = latestUpdate(page.items);
      return latest === null ? url
        : withParams(url, { updated_since: updatedSince(latest) });
    }

    /** Size of the first page of messages for a list `height` px tall. */
    function pageSizeFor(height) {
      const fitting = Math.ceil((Number(height) || 0) / MIN_MESSAGE_HEIGHT);
      return Math.min(Math.max(fitting, FIRST_PAGE_MIN), FIRST_PAGE_MAX);
    }

    /** `items` in lists of at most `size`. */
    function chunks(items, size) {
      const lists = [];
      for (let i = 0; i < items.length; i += size) {
        lists.push(items.slice(i, i + size));
      }
      return lists;
    }

    // Intl.DateTimeFormat objects are costly to make and a page of
    // messages needs several each: made once per locale and fields.
    const dateFormats = new Map();

    function dateFormat(locale, fields) {
      const key = JSON.stringify([locale || null, fields]);
      let format = dateFormats.get(key);
      if (!format) {
        format = new Intl.DateTimeFormat(locale, fields);
        dateFormats.set(key, format);
      }
      return format;
    }

    /** A message's time, readable: "14:05" today, "Mar 3, 14:05" this year,
     * "Mar 3, 2024, 14:05" before. `options` (locale, timeZone, now in ms)
     * are for the tests; the browser's own settings are the default. */
    function formatTime(timestamp, options) {
      const opts = options || {};
      const date = new Date(timestamp * 1000);
      const now = new Date(opts.now === undefined ? Date.now() : opts.now);
      const format = function (fields, when) {
        return dateFormat(opts.locale,
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
      return dateFormat(opts.locale, {
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

    /** Messages in the order they were stored (their ids): the order of
     * the pages, and editing keeps a message's place. */
    const Messages = Backbone.Collection.extend({
      model: Message,
      comparator: 'id',
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
     * The messages loaded are one range of the history, from the oldest
     * page loaded to the newest message; `users` holds the users online
     * and the authors of those messages.
     *
     * Events: the collections' and the session's own, plus
     *   'connection' (ok, error)   whether the last refresh worked
     *   'history'                  historyState() may have changed
     *   'missing-user' (id)        the server does not know this author
     */
    class Chat {
      /**
       * options.fetch     for the Api (tests)
       * options.storage   where the session is kept (sessionStorage)
       * options.now()     the time in ms (tests)
       * options.pageSize  messages in the first page (set by start() to
       *                   what fits the list)
       * options.timers    setTimeout/clearTimeout (the global ones)
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
        this.timers = opts.timers || root;
        this.pageSize = opts.pageSize || FIRST_PAGE_MIN;
        this.api = opts.api || new Api({
          fetch: opts.fetch,
          getToken: () => this.session.get('token'),
          onUnauthorized: (token) => this.forget(token),
        });
        // Per list: whether its first page is in, and the link of its
        // changes feed, where the next catch-up starts.
        this.loaded = { users: false, messages: false };
        this.feeds = { users: null, messages: null };
        // The link to the next older page of messages; null when the
        // oldest message is loaded (or an old service sent the whole list).
        this.older = null;
        this.olderLoading = null;        // the older page on its way
        this.olderFailures = 0;
        this.olderPaused = false;        // after a failure, for a while
        this.epoch = 0;                  // counts fresh starts of the list
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

      // --- data: first pages and catching up ---

      /** Brings users and messages up to date: the first pages the first
       * time, then what changed (the changes feeds). Both lists are
       * awaited even when one fails, so that no request of this refresh
       * is still running when the next one starts; a list that failed is
       * tried again by the next refresh, the other goes on. */
      async refresh() {
        const results = await Promise.allSettled([
          this.loaded.messages ? this.catchUp('messages')
            : this.loadNewestMessages(),
          this.loaded.users ? this.catchUp('users') : this.loadOnlineUsers(),
        ]);
        const failed = results.find((result) => result.status === 'rejected');
        if (failed) {
          throw failed.reason;
        }
        this.fetchUnknownAuthors();
      }

      /** The newest page of messages (as many as fit the list), shown with
       * its authors' names: the chat starts (or starts again) here. The
       * page's `next` leads to older messages, its `updates` to what
       * changes from now on. */
      async loadNewestMessages() {
        const data = await this.api.get('/api/messages',
          { query: { limit: this.pageSize } });
        const page = readPage(data, 'messages');
        await this.waitForAuthors(page.items);
        this.epoch += 1;     // an older page asked for before is not ours
        this.older = page.paged && page.more ? page.next : null;
        this.feeds.messages = firstFeedLink('/api/messages', page);
        this.loaded.messages = true;
        this.messages.reset(page.items);
        this.trigger('history');
      }

      /** Who is online (one page), and from then on the users' changes
       * feed. Loaded again (a fresh start), users no longer in the page
       * are offline. */
      async loadOnlineUsers() {
        const data = await this.api.get('/api/users',
          { query: { online: 1, limit: ONLINE_PAGE_SIZE } });
        const page = readPage(data, 'users');
        if (this.loaded.users && !page.more) {
          const online = new Set(page.items.map((user) => user.id));
          for (const user of this.users.filter((u) => u.get('online'))) {
            if (!online.has(user.id)) {
              user.set('online', false);
            }
          }
        }
        mergeModels(this.users, page.items);
        // An old service's feed: every user changed, online or not.
        this.feeds.users = firstFeedLink('/api/users', page);
        this.loaded.users = true;
      }

      /** Follows a list's changes feed ('users' or 'messages') from where
       * it was left, merging what changed; `next` at once while there is
       * `more`, a few pages at most. Further behind than that, or when the
       * server moved the feed's start past our place (messages older than
       * a day are not in the feed), the list starts afresh from its newest
       * page, as chats do after a long absence. `fresh`: the list has
       * just started afresh; no second fresh start in the same round. */
      async catchUp(name, fresh) {
        for (let pages = 0; ; pages += 1) {
          const url = this.feeds[name];
          if (pages === MAX_CATCHUP_PAGES) {
            return fresh ? undefined : this.startAfresh(name);
          }
          const page = readPage(await this.api.get(url), name);
          const since = linkNumber(url, 'updated_since');
          if (!fresh && page.updatedSince !== null && since !== null &&
              page.updatedSince > since) {
            return this.startAfresh(name);
          }
          this.applyChanges(name, page.items);
          this.feeds[name] = nextFeedLink(url, page);
          if (!page.more) {
            return undefined;
          }
        }
      }

      /** Loads a list's first page again, then what changed while it
       * came (pushes meanwhile may have been newer than the page). */
      async startAfresh(name) {
        if (name === 'messages') {
          await this.loadNewestMessages();
        } else {
          await this.loadOnlineUsers();
        }
        return this.catchUp(name, true);
      }

      /** Moves a list's changes feed ('users' or 'messages') forward to
       * `updatedAt`, a second early (never back): pushes do in Socket.IO
       * mode, so that after a reconnection only what was missed is asked
       * for. */
      advanceFeed(name, updatedAt) {
        const url = this.feeds[name];
        if (!url || typeof updatedAt !== 'number') {
          return;
        }
        const since = linkNumber(url, 'updated_since');
        if (since === null || updatedSince(updatedAt) > since) {
          this.feeds[name] = withParams(url,
            { updated_since: updatedSince(updatedAt), after: null });
        }
      }

      applyChanges(name, items) {
        if (name === 'messages') {
          this.applyMessages(items);
        } else {
          this.applyUsers(items);
        }
      }

      /** Merges changed or new messages that belong to the range loaded:
       * newer ones join at the bottom, loaded ones are updated in place;
       * those older than the oldest loaded are left to the older pages.
       * Their authors are fetched if unknown. */
      applyMessages(items, options) {
        if (!this.loaded.messages) {
          return 0;   // the first page, or a catch-up after it, brings them
        }
        const oldest = this.messages.length ? this.messages.first().id
          : null;
        const inRange = items.filter((item) => hasId(item) &&
          (this.older === null || (oldest !== null && item.id >= oldest)));
        const count = mergeModels(this.messages, inRange, options);
        if (count) {
          this.fetchAuthors(inRange.map((item) => item.user_id));
        }
        return count;
      }

      /** Merges changed users: known ones are updated, unknown ones join
       * only if online (the list shows who is online; offline users stay
       * known, their names are needed). */
      applyUsers(items) {
        return mergeModels(this.users, items.filter((item) => hasId(item) &&
          (item.online || this.users.get(item.id))));
      }

      /** Applies one pushed model ({"class": "User"|"Message"}), as the
       * Socket.IO service sends them in `updated_model`. */
      applyUpdate(className, model) {
        if (className === 'User') {
          this.applyUsers([model]);
        } else if (className === 'Message') {
          this.applyMessages([model]);
        }
      }

      // --- data: older pages ---

      /** 'unknown' (no page yet), 'loading' (an older page is on its way),
       * 'more' (older pages exist) or 'complete' (the oldest message is
       * loaded). */
      historyState() {
        if (!this.loaded.messages) {
          return 'unknown';
        }
        if (this.olderLoading) {
          return 'loading';
        }
        return this.older ? 'more' : 'complete';
      }

      /** Loads the next older page (the `next` link, with larger pages)
       * and merges it above the oldest message. One at a time: asked for
       * while one is on its way, it answers that one. After a failure,
       * asks again only after a pause (a 'history' event says when).
       * Resolves with whether a page was added. */
      loadOlder() {
        if (this.olderLoading) {
          return this.olderLoading;
        }
        if (!this.older || this.olderPaused) {
          return Promise.resolve(false);
        }
        const url = withParams(this.older, { limit: OLDER_PAGE_SIZE });
        this.olderLoading = this.fetchOlder(url, this.epoch).finally(() => {
          this.olderLoading = null;
          this.trigger('history');
        });
        this.trigger('history');
        return this.olderLoading;
      }

      async fetchOlder(url, epoch) {
        let page;
        try {
          page = readPage(await this.api.get(url), 'messages');
        } catch (error) {
          this.pauseOlder();
          return false;
        }
        await this.waitForAuthors(page.items);
        if (epoch !== this.epoch) {
          return false;   // the list started afresh meanwhile
        }
        this.olderFailures = 0;
        this.older = page.paged && page.more ? page.next : null;
        return mergeModels(this.messages, page.items) > 0;
      }

      /** After a failed older page: no new try for a pause that grows
       * while they keep failing, then a 'history' event (the list asks
       * again if the reader is still near the top). */
      pauseOlder() {
        this.olderFailures += 1;
        this.olderPaused = true;
        const pause = Math.min(POLL_INTERVAL * 2 ** (this.olderFailures - 1),
          MAX_RETRY_INTERVAL);
        this.timers.setTimeout(() => {
          this.olderPaused = false;
          this.trigger('history');
        }, pause);
      }

      // --- data: authors ---

      /** GET /api/users?ids=... for the users among `ids` not known yet:
       * one request for up to MAX_IDS of them, each id asked once at a
       * time, and never again once the server did not know it. Resolves
       * (never rejects) when the answers are in; a failed request is
       * tried again by the next fetchUnknownAuthors(). */
      fetchAuthors(ids) {
        const wanted = _.uniq(ids).filter((id) =>
          id !== undefined && id !== null && !this.users.get(id) &&
          !this.pendingUsers.has(id) && !this.missingUsers.has(id));
        return Promise.all(chunks(wanted, MAX_IDS)
          .map((batch) => this.fetchUsers(batch)));
      }

      async fetchUsers(ids) {
        for (const id of ids) {
          this.pendingUsers.add(id);
        }
        try {
          const list = ids.map((id) => encodeURIComponent(id)).join(',');
          const data = await this.api.get(`/api/users?ids=${list}`);
          // Only those asked for: an old users service ignores `ids` and
          // answers everybody.
          const asked = new Set(ids);
          const found = readPage(data, 'users').items
            .filter((user) => asked.has(user.id));
          mergeModels(this.users, found, { onlyNew: true });
          for (const user of found) {
            asked.delete(user.id);
          }
          for (const id of asked) {
            this.missingUsers.add(id);
            this.trigger('missing-user', id);
          }
        } catch (error) {
          // not known yet; asked again later
        } finally {
          for (const id of ids) {
            this.pendingUsers.delete(id);
          }
        }
      }

      /** The authors of the messages loaded that are not known yet. */
      fetchUnknownAuthors() {
        return this.fetchAuthors(this.messages.pluck('user_id'));
      }

      /** Fetches the authors of `items` (plain messages) and resolves once
       * they are in, or after AUTHORS_WAIT ms at most: a slow users
       * service does not hold the messages back. */
      waitForAuthors(items) {
        const fetching = this.fetchAuthors(items.map((item) => item.user_id));
        return new Promise((resolve) => {
          const timer = this.timers.setTimeout(resolve, AUTHORS_WAIT);
          fetching.then(() => {
            this.timers.clearTimeout(timer);
            resolve();
          });
        });
      }

      // --- what the user does ---

      /** POST /api/messages; the answer joins the list at once. */
      async postMessage(source) {
        const message = await this.api.post('/api/messages', { source });
        if (message) {
          this.applyMessages([message], { onlyNew: true });
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

    /** Keeps the chat up to date by polling the REST API every second
     * (the first pages, then the changes feeds); posts and pings are plain
     * REST requests. */
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
    // 7. Views (text goes in as text, never as HTML)
    // ------------------------------------------------------------------

    /** #user-list: one .user per user online. Users change often (every
     * ping changes last_seen_at), the list rarely: it is drawn again only
     * when what it shows changed. */
    const UserListView = Backbone.View.extend({
      initialize: function (options) {
        this.chat = options.chat;
        this.shown = null;    // what the list shows, as a string
        // Many events arrive per poll; draw once after them.
        this.scheduleRender = _.debounce(this.render.bind(this), 0);
        this.listenTo(this.collection, 'update reset sort change',
          this.scheduleRender);
        this.listenTo(this.chat.session, 'change:userId',
          this.scheduleRender);
      },

      render: function () {
        const me = this.chat.session.get('userId');
        const users = onlineUsers(this.collection.toJSON());
        const shown = JSON.stringify(users.map(
          (user) => [user.id, user.nickname, user.id === me]));
        if (shown === this.shown) {
          return this;
        }
        this.shown = shown;
        const items = users.map(function (user) {
          return $('<li class="user online">')
            .attr('data-id', user.id)
            .toggleClass('me', user.id === me)
            .attr('title', 'online')
            .append($('<span class="nickname">').text(user.nickname));
        });
        this.$el.empty().append(items);
        return this;
      },
    });

    /** One .message element (made off the document): author, time and
     * the server's html. `author` is the name to show, `mine` whether it
     * is the reader's own. */
    function messageElement(document, message, author, mine) {
      const element = document.createElement('div');
      element.className = mine ? 'message mine' : 'message';
      element.setAttribute('data-id', message.id);
      element.setAttribute('data-user-id', message.user_id);
      const meta = document.createElement('div');
      meta.className = 'meta';
      const name = document.createElement('span');
      name.className = 'author';
      name.textContent = author;
      const time = document.createElement('time');
      time.className = 'time';
      time.setAttribute('datetime',
        new Date(message.created_at * 1000).toISOString());
      time.setAttribute('title', formatFullTime(message.created_at));
      time.textContent = formatTime(message.created_at);
      meta.append(name, time);
      const body = document.createElement('div');
      body.className = 'body';
      if (typeof message.html === 'string' && message.html !== '') {
        // Sanitised by the messages service. (innerHTML runs no script,
        // where jQuery's html() would.)
        body.innerHTML = message.html;
        for (const link of body.querySelectorAll('a')) {
          // Links open beside the chat; only web links are followed.
          if (/^https?:$/.test(link.protocol)) {
            link.setAttribute('target', '_blank');
            link.setAttribute('rel', 'nofollow noopener noreferrer');
          } else {
            link.removeAttribute('href');
          }
        }
      } else {
        body.className = 'body pending';
        body.textContent = message.source || '';
      }
      element.append(meta, body);
      return element;
    }

    /**
     * #message-list: the messages loaded, oldest first, in #messages.
     *
     * Whatever changes (a page of messages, a push, an edit, authors'
     * names) is drawn in one pass, in a microtask after the change: the
     * new elements are made off the document and inserted at once (one
     * insertion per run of neighbours, so one for a page), and the layout
     * is read once before and once after, never per message. What the
     * reader sees does not move: at the bottom, the list stays at the
     * bottom; scrolled back, the first message in view keeps its place
     * (the height added above it is added to scrollTop; the browser's own
     * scroll anchoring is off, see app.css). Messages arriving below a
     * reader scrolled back show #new-messages.
     *
     * Near the top (a screen away), it asks the chat for the next older
     * page; #history-status says when one is loading and when the
     * beginning of the chat is reached.
     *
     * Works on the native DOM, without jQuery: it is the page's hot path,
     * and the unit tests drive it with a fake document (tests/fakes.js).
     * options: chat, collection, el (the scrolling element), messages (the
     * element holding the messages), status (#history-status), empty
     * (#no-messages), notice (#new-messages).
     */
    const MessageListView = Backbone.View.extend({
      // Backbone's hook for views without jQuery: `el` is the element
      // itself (start() passes it).
      _setElement: function (el) {
        this.el = el;
        this.$el = $ ? $(el) : null;
      },

      initialize: function (options) {
        this.chat = options.chat;
        this.document = this.el.ownerDocument;
        this.box = options.messages;
        this.status = options.status;
        this.empty = options.empty;
        this.notice = options.notice;
        this.elements = new Map();   // message id -> its element
        this.newestId = null;        // of the newest message shown
        this.pending = this.nothingPending();
        this.flushQueued = false;
        this.listenTo(this.collection, 'update', this.collectionUpdated);
        this.listenTo(this.collection, 'change', (model) => {
          this.pending.changed.add(model);
          this.queueFlush();
        });
        this.listenTo(this.collection, 'reset', this.render);
        this.listenTo(this.chat.users, 'add change:nickname', (user) => {
          this.pending.authors.add(user.id);
          this.queueFlush();
        });
        this.listenTo(this.chat, 'missing-user', (id) => {
          this.pending.authors.add(id);
          this.queueFlush();
        });
        this.listenTo(this.chat.session, 'change:userId', () => {
          this.pending.mine = true;
          this.queueFlush();
        });
        this.listenTo(this.chat, 'history', this.historyChanged);
        this.el.addEventListener('scroll', () => this.scrolled(),
          { passive: true });
        if (this.notice) {
          this.notice.addEventListener('click', () => this.scrollToBottom());
        }
        this.showHistory();
      },

      nothingPending: function () {
        return { added: new Set(), changed: new Set(), authors: new Set(),
          mine: false };
      },

      collectionUpdated: function (collection, options) {
        const changes = options.changes;
        for (const model of changes.added) {
          this.pending.added.add(model);
        }
        for (const model of changes.removed) {
          this.pending.added.delete(model);
          const element = this.elements.get(model.id);
          if (element) {
            element.remove();
            this.elements.delete(model.id);
          }
        }
        this.queueFlush();
      },

      queueFlush: function () {
        if (!this.flushQueued) {
          this.flushQueued = true;
          root.queueMicrotask(() => this.flush());
        }
      },

      // --- drawing ---

      authorName: function (id) {
        const user = this.chat.users.get(id);
        if (user) {
          return user.get('nickname');
        }
        return this.chat.missingUsers.has(id) ? 'unknown user' : '…';
      },

      build: function (model) {
        const message = model.attributes;
        const element = messageElement(this.document, message,
          this.authorName(message.user_id),
          message.user_id === this.chat.session.get('userId'));
        this.elements.set(model.id, element);
        return element;
      },

      /** The whole list again, in one insertion, at the bottom (a new
       * start: the first page, or after a long absence). */
      render: function () {
        this.pending = this.nothingPending();
        this.elements.clear();
        const fragment = this.document.createDocumentFragment();
        for (const model of this.collection.models) {
          fragment.appendChild(this.build(model));
        }
        this.box.replaceChildren(fragment);
        this.newestId = this.collection.length ? this.collection.last().id
          : null;
        this.showEmpty();
        this.showHistory();
        this.el.scrollTop = this.el.scrollHeight;
        this.showNotice(false);
        this.loadOlderIfNear();
        return this;
      },

      /** Draws what changed since the last time, in one pass. */
      flush: function () {
        this.flushQueued = false;
        const pending = this.pending;
        this.pending = this.nothingPending();
        const redrawn = this.toRedraw(pending);
        const added = new Set([...pending.added].filter((model) =>
          !this.elements.has(model.id) && this.collection.get(model.id)));
        const mine = pending.mine && this.elements.size > 0;
        if (!redrawn.size && !added.size && !mine) {
          return;    // nothing shown changes: no layout to read
        }
        const before = this.measure();             // layout read once
        const newestBefore = this.newestId;
        for (const model of redrawn) {
          this.elements.get(model.id).replaceWith(this.build(model));
        }
        if (mine) {
          this.markMine();
        }
        this.insert(added);
        this.showEmpty();
        this.keepPlace(before);                    // and once after
        const arrivedBelow = newestBefore !== null && this.newestId !== null &&
          this.newestId > newestBefore;
        if (arrivedBelow && !before.atBottom) {
          this.showNotice(true);
        }
        this.loadOlderIfNear();
      },

      /** The messages shown to draw again: those that changed, and those
       * of authors whose name changed or came. */
      toRedraw: function (pending) {
        const models = new Set();
        for (const model of pending.changed) {
          if (this.elements.has(model.id) && this.collection.get(model.id)) {
            models.add(model);
          }
        }
        if (pending.authors.size) {
          for (const model of this.collection.models) {
            if (pending.authors.has(model.get('user_id')) &&
                this.elements.has(model.id)) {
              models.add(model);
            }
          }
        }
        return models;
      },

      /** .mine on the reader's own messages (after logging in or out). */
      markMine: function () {
        const me = this.chat.session.get('userId');
        for (const model of this.collection.models) {
          const element = this.elements.get(model.id);
          if (element) {
            element.classList.toggle('mine', model.get('user_id') === me);
          }
        }
      },

      /** Inserts the elements of the `added` models where they belong:
       * each run of added neighbours goes in at once, before the message
       * that follows it (for a page: one insertion). */
      insert: function (added) {
        if (!added.size) {
          return;
        }
        let fragment = null;
        for (const model of this.collection.models) {
          if (added.has(model)) {
            fragment = fragment || this.document.createDocumentFragment();
            fragment.appendChild(this.build(model));
          } else if (fragment && this.elements.has(model.id)) {
            this.box.insertBefore(fragment, this.elements.get(model.id));
            fragment = null;
          }
        }
        if (fragment) {
          this.box.appendChild(fragment);
        }
        const newest = this.collection.last();
        this.newestId = newest ? newest.id : null;
      },

      /** Where the reader is, before a change: at the bottom, or which
       * message is the first in view and where (read from one layout;
       * the first in view is found by bisection). */
      measure: function () {
        const el = this.el;
        const scrollTop = el.scrollTop;
        const atBottom =
          el.scrollHeight - scrollTop - el.clientHeight < NEAR_BOTTOM;
        let anchor = null;
        if (!atBottom) {
          const items = this.box.children;
          let low = 0;
          let high = items.length;
          while (low < high) {
            const middle = (low + high) >> 1;
            const item = items[middle];
            if (item.offsetTop + item.offsetHeight <= scrollTop) {
              low = middle + 1;
            } else {
              high = middle;
            }
          }
          if (low < items.length) {
            anchor = { id: Number(items[low].getAttribute('data-id')),
              top: items[low].offsetTop };
          }
        }
        return { scrollTop, atBottom, anchor };
      },

      /** After a change: back to the bottom, or the first message that
       * was in view back where it was. */
      keepPlace: function (before) {
        const el = this.el;
        if (before.atBottom) {
          el.scrollTop = el.scrollHeight;
          return;
        }
        const anchor = before.anchor && this.elements.get(before.anchor.id);
        if (anchor) {
          const moved = anchor.offsetTop - before.anchor.top;
          if (moved) {
            el.scrollTop = before.scrollTop + moved;
          }
        }
      },

      /** Goes to the newest message (after posting, or from the notice). */
      scrollToBottom: function () {
        this.flush();
        this.el.scrollTop = this.el.scrollHeight;
        this.showNotice(false);
      },

      // --- scrolling back ---

      scrolled: function () {
        this.loadOlderIfNear();
        if (this.noticeShown && this.nearBottom()) {
          this.showNotice(false);
        }
      },

      nearBottom: function () {
        const el = this.el;
        return el.scrollHeight - el.scrollTop - el.clientHeight < NEAR_BOTTOM;
      },

      /** Asks for the next older page when the reader is near the top
       * (the chat loads one at a time). */
      loadOlderIfNear: function () {
        if (this.chat.historyState() === 'more' &&
            this.el.scrollTop < this.el.clientHeight * PREFETCH_SCREENS) {
          this.chat.loadOlder();
        }
      },

      /** Reads where the reader is before the status line changes (a
       * read after a change would force a layout). */
      historyChanged: function () {
        this.loadOlderIfNear();
        this.showHistory();
      },

      // --- markers ---

      /** #history-status: its line keeps its height whatever it says, so
       * that its changes never move the messages. */
      showHistory: function () {
        let state = this.chat.historyState();
        if (state === 'complete' && !this.collection.length) {
          state = 'unknown';     // #no-messages says it
        }
        const texts = { loading: 'Loading older messages…',
          complete: 'Beginning of the chat' };
        this.status.setAttribute('data-state', state);
        this.status.textContent = texts[state] || '';
      },

      showEmpty: function () {
        this.empty.hidden = !(this.chat.loaded.messages &&
          this.collection.length === 0);
      },

      showNotice: function (shown) {
        this.noticeShown = shown;
        if (this.notice) {
          this.notice.hidden = !shown;
        }
      },
    });

    /** #login-form (logged out) and #session-info (logged in). */
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

      const byId = (id) => root.document.getElementById(id);
      const messageList = new MessageListView({ el: byId('message-list'),
        messages: byId('messages'), status: byId('history-status'),
        empty: byId('no-messages'), notice: byId('new-messages'),
        collection: chat.messages, chat });
      new UserListView({ el: '#user-list', collection: chat.users, chat });
      new SessionView({ el: root.document.body, chat }).render();
      // The first page fills the list (its height once the right form
      // shows below it).
      chat.pageSize = pageSizeFor(messageList.el.clientHeight);
      new ComposerView({ el: '#composer', chat, transport, messageList });
      new StatusView({ el: '#connection-status', chat });

      transport.start();
      return { chat, transport, pinger, messageList };
    }

    const MicroFlack = {
      POLL_INTERVAL, PING_INTERVAL, MAX_RETRY_INTERVAL, STORAGE_KEY,
      SOCKETIO_PATH, POST_TIMEOUT, FIRST_PAGE_MIN, FIRST_PAGE_MAX,
      OLDER_PAGE_SIZE, ONLINE_PAGE_SIZE, MAX_IDS, MAX_CATCHUP_PAGES,
      AUTHORS_WAIT,
      basicAuthHeader, tokenClaims, latestUpdate, updatedSince, mergeModels,
      compareUsers, onlineUsers, readPage, withParams, linkNumber,
      firstFeedLink, nextFeedLink, pageSizeFor, chunks, formatTime,
      formatFullTime, withQuery,
      ApiError, Api, Poller,
      User, Users, Message, Messages, Session, Chat,
      PollingTransport, SocketTransport, makeTransport,
      UserListView, messageElement, MessageListView, SessionView,
      ComposerView, StatusView, readConfig, start,
    };

    if (root.document && $) {
      $(function () {
        MicroFlack.app = start();
      });
    }
    return MicroFlack;
  });
