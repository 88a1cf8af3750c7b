// Chat: the client's state (the session, the users and the messages
// loaded) and what it can do through the REST API (log in and out, load
// pages, catch up with the changes feeds, post, ping).
//
// The history can be long (a million messages), so the page never asks
// for all of it (issue 14):
// - it loads the newest page of messages, as many as fit the list (20 to
//   100), the users who are online, and then the authors of the messages
//   it shows (GET /api/users?ids=..., one request for a page);
// - scrolled near the top, it loads the next older page (the page's
//   `next` link) and puts it above without moving what the reader sees;
// - changes arrive as pushes (Socket.IO) or from the changes feeds (the
//   pages' `updates` links, then each answer's `next`), followed page by
//   page after every (re)connection or every second when polling; a
//   client too far behind starts again from the newest page;
// - a changed message older than the oldest one loaded is left alone (it
//   comes in its current form when scrolled to).

import { Api } from './api.js';
import { basicAuthHeader, tokenClaims } from './credentials.js';
import { _, Backbone } from './libraries.js';
import { mergeModels, Messages, Session, Users } from './models.js';
import {
  chunks, firstFeedLink, hasId, linkNumber, nextFeedLink, readPage,
  updatedSince, withParams,
} from './paging.js';
import { backoff } from './poller.js';
import {
  AUTHORS_WAIT, FIRST_PAGE_MIN, MAX_CATCHUP_PAGES, MAX_IDS,
  MAX_RETRY_INTERVAL, OLDER_PAGE_SIZE, ONLINE_PAGE_SIZE, POLL_INTERVAL,
  STORAGE_KEY,
} from './settings.js';

/** sessionStorage, or nothing when the browser refuses it. */
function sessionStorageOrNull() {
  try {
    return globalThis.sessionStorage || null;
  } catch (error) {
    return null;
  }
}

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
export class Chat {
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
    this.timers = opts.timers || globalThis;
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
    const pause = backoff(POLL_INTERVAL, this.olderFailures,
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
