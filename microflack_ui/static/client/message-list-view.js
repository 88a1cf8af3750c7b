// The message list: the page's hot path (see MessageListView).

import { $, Backbone } from './libraries.js';
import { messageElement } from './message-element.js';
import { NEAR_BOTTOM, PREFETCH_SCREENS } from './settings.js';

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
export const MessageListView = Backbone.View.extend({
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
      globalThis.queueMicrotask(() => this.flush());
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
