// Fakes and fixtures shared by the unit tests (not a test file itself).
/** A fetch answering from `routes` ("METHOD /path" -> status, body); every
 * call is kept in `calls` as {method, url, headers, body}. */
function fakeFetch(routes) {
  const calls = [];
  const fetch = async function (url, init) {
    const call = { method: init.method, url, headers: init.headers,
      body: init.body === undefined ? undefined : JSON.parse(init.body) };
    calls.push(call);
    const path = url.split('?')[0];
    let answer = routes[`${init.method} ${url}`] || routes[`${init.method} ${path}`];
    if (typeof answer === 'function') {
      answer = answer(call);
    }
    if (answer instanceof Error) {
      throw answer;
    }
    const [status, body] = answer || [404, { error: 'not found' }];
    return {
      ok: status >= 200 && status < 300,
      status,
      statusText: '',
      text: async () => (body === undefined ? '' : JSON.stringify(body)),
    };
  };
  fetch.calls = calls;
  return fetch;
}

function memoryStorage() {
  const items = new Map();
  return {
    getItem: (key) => (items.has(key) ? items.get(key) : null),
    setItem: (key, value) => items.set(key, String(value)),
    removeItem: (key) => items.delete(key),
    items,
  };
}

/** An unsigned JWT with these claims (the client only reads them). */
function jwt(claims) {
  const part = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
  return `${part({ alg: 'HS256', typ: 'JWT' })}.${part(claims)}.signature`;
}

const HOUR = 3600;
const NOW = 1767225600;   // 2026-01-01T00:00:00Z

function user(id, nickname, extra) {
  return Object.assign({ id, nickname, online: true, created_at: NOW,
    updated_at: NOW }, extra);
}

function message(id, userId, extra) {
  return Object.assign({ id, user_id: userId, source: `m${id}`,
    html: `m${id}`, created_at: NOW + id, updated_at: NOW + id }, extra);
}

function settle() {
  return new Promise((resolve) => setImmediate(resolve));
}

// --- the messages and users services in miniature ---------------------

const DAY = 24 * HOUR;

/**
 * Routes (for fakeFetch) answering GET /api/messages and GET /api/users as
 * the paging contract (/work/issue14/contract.md) says, from `state`,
 * which the test may change at any time:
 *   state.messages, state.users   the stored models (plain objects)
 *   state.now                     the server's time (s; NOW by default)
 *   state.maxPage                 MAX_PAGE_SIZE (500)
 *   state.legacy                  answer as a service from before paging:
 *                                 plain lists, paging parameters ignored
 */
function fakeServer(state) {
  const now = () => (state.now === undefined ? NOW : state.now);

  function link(path, filters, query) {
    return `${path}?${new URLSearchParams([...filters, ...query])}`;
  }

  function number(params, name) {
    return params.has(name) && params.get(name) !== ''
      ? Number(params.get(name)) : null;
  }

  const byUpdate = (a, b) => (a.updated_at - b.updated_at) || (a.id - b.id);

  /** One list's answer to `url`; `floor`: the feed starts no earlier. */
  function answer(name, url, all, floor) {
    const parsed = new URL(url, 'http://fake.invalid');
    const params = parsed.searchParams;
    const path = parsed.pathname;
    const paged = ['limit', 'before', 'after', 'updated_since']
      .some((key) => number(params, key) !== null);
    if (state.legacy || !paged) {
      let items = all.slice();
      let since = number(params, 'updated_since');
      if (floor !== null) {
        since = Math.max(since === null ? floor : since, floor);
      }
      if (since !== null) {
        items = items.filter((item) => item.updated_at >= since);
      }
      return [200, { [name]: items.sort(byUpdate) }];
    }
    const max = state.maxPage || 500;
    const limit = Math.min(number(params, 'limit') || max, max);
    const before = number(params, 'before');
    const after = number(params, 'after');
    const requested = number(params, 'updated_since');
    const filters = params.has('online') ? [['online', params.get('online')]]
      : [];
    if (requested !== null) {
      const since = floor === null ? requested : Math.max(requested, floor);
      const continued = after !== null && since === requested;
      const changed = all.filter((item) => item.updated_at >= since &&
        (!continued || item.updated_at > since || item.id > after))
        .sort(byUpdate);
      const items = changed.slice(0, limit);
      const more = changed.length > limit;
      const last = items[items.length - 1];
      let next;
      if (more) {
        next = [['updated_since', last.updated_at], ['after', last.id]];
      } else if (last) {
        next = [['updated_since', last.updated_at - 1]];
      } else {
        next = [['updated_since', since], ...(continued ? [['after', after]] : [])];
      }
      return [200, { [name]: items,
        _meta: { limit, more, updated_since: since },
        _links: { self: url, next: link(path, filters, [...next, ['limit', limit]]) } }];
    }
    let items;
    let more;
    if (after !== null) {
      const newer = all.filter((item) => item.id > after)
        .sort((a, b) => a.id - b.id);
      items = newer.slice(0, limit);
      more = newer.length > limit;
    } else {
      const older = all.filter((item) => before === null || item.id < before)
        .sort((a, b) => b.id - a.id);
      items = older.slice(0, limit).reverse();
      more = older.length > limit;
    }
    const links = { self: url,
      updates: link(path, [], [['updated_since', now() - 1]]) };
    if (more) {
      links.next = after !== null
        ? link(path, filters, [['after', items[items.length - 1].id], ['limit', limit]])
        : link(path, filters, [['before', items[0].id], ['limit', limit]]);
    }
    return [200, { [name]: items, _meta: { limit, more }, _links: links }];
  }

  return {
    'GET /api/messages': (call) => answer('messages', call.url,
      state.messages || [], now() - DAY),
    'GET /api/users': (call) => {
      const params = new URL(call.url, 'http://fake.invalid').searchParams;
      let users = state.users || [];
      if (params.has('online')) {
        users = users.filter((user) => user.online === (params.get('online') === '1'));
      }
      if (params.get('ids') && !state.legacy) {
        const ids = new Set(params.get('ids').split(',').map(Number));
        return [200, { users: users.filter((user) => ids.has(user.id))
          .sort((a, b) => a.id - b.id) }];
      }
      return answer('users', call.url, users, null);
    },
  };
}

/** The query of a request's URL, as an object. */
function query(url) {
  return Object.fromEntries(new URL(url, 'http://fake.invalid').searchParams);
}

// --- a fake DOM, enough for the message list (MessageListView) -------
//
// It keeps count of what a browser would have to do: `insertions` (nodes
// or fragments put into a connected element), `reads` (layout properties
// read) and `layouts` (reads that found the layout out of date after a
// change of the connected tree: forced synchronous layouts). Heights: a
// .message is 50 px unless it has `fakeHeight`, a hidden element 0, an
// element with children the sum of theirs, one with text 20 px (a line),
// an empty one 0; elements stack; the scrolling element's clientHeight is
// given.

class FakeDocument {
  constructor() {
    this.insertions = 0;
    this.reads = 0;
    this.layouts = 0;
    this.dirty = true;
  }

  createElement(tagName) {
    return new FakeElement(this, tagName.toUpperCase());
  }

  createDocumentFragment() {
    return new FakeElement(this, '#fragment');
  }

  /** A layout property is read on `element`. */
  read(element) {
    if (element.isConnected) {
      this.reads += 1;
      if (this.dirty) {
        this.layouts += 1;
        this.dirty = false;
      }
    }
  }

  /** `node` (connected or not) or its children changed. */
  changed(node) {
    if (node.isConnected) {
      this.dirty = true;
    }
  }

  counts() {
    return { insertions: this.insertions, reads: this.reads,
      layouts: this.layouts };
  }
}

class FakeElement {
  constructor(document, tagName) {
    this.ownerDocument = document;
    this.tagName = tagName;
    this.children = [];
    this.parentNode = null;
    this.attributes = new Map();
    this.text = '';
    this.html = null;
    this.classes = '';
    this.isHidden = false;
    this.fakeHeight = null;
    this.listeners = new Map();
    this.isRoot = false;      // the document's body, say: connected
    this.scrollTopValue = 0;
    this.clientHeightValue = 0;
    const element = this;
    this.classList = {
      contains: (name) => element.className.split(/\s+/).includes(name),
      toggle(name, on) {
        const names = element.className.split(/\s+/).filter((n) => n && n !== name);
        if (on) {
          names.push(name);
        }
        element.className = names.join(' ');
      },
    };
  }

  get isConnected() {
    let node = this;
    while (node.parentNode) {
      node = node.parentNode;
    }
    return node.isRoot;
  }

  // --- attributes and content (a change of a connected element makes
  // the layout out of date) ---

  get className() {
    return this.classes;
  }

  set className(value) {
    this.classes = String(value);
    this.ownerDocument.changed(this);
  }

  get hidden() {
    return this.isHidden;
  }

  set hidden(value) {
    this.isHidden = Boolean(value);
    this.ownerDocument.changed(this);
  }

  setAttribute(name, value) {
    this.attributes.set(name, String(value));
  }

  getAttribute(name) {
    return this.attributes.has(name) ? this.attributes.get(name) : null;
  }

  removeAttribute(name) {
    this.attributes.delete(name);
  }

  set textContent(value) {
    this.removeAll();
    this.text = String(value);
    this.ownerDocument.changed(this);
  }

  get textContent() {
    return this.text + this.children.map((child) => child.textContent).join('');
  }

  set innerHTML(value) {
    this.removeAll();
    this.html = String(value);
    this.ownerDocument.changed(this);
  }

  get innerHTML() {
    return this.html;
  }

  querySelectorAll() {
    return [];       // the fake parses no HTML: no links in it
  }

  /** The first descendant with this class (".name"). */
  find(selector) {
    const name = selector.replace(/^\./, '');
    for (const child of this.children) {
      if (child.classList.contains(name)) {
        return child;
      }
      const found = child.find(selector);
      if (found) {
        return found;
      }
    }
    return null;
  }

  // --- the tree ---

  removeAll() {
    for (const child of this.children) {
      child.parentNode = null;
    }
    if (this.children.length) {
      this.ownerDocument.changed(this);
    }
    this.children = [];
  }

  /** `node`'s nodes (a fragment's children, or itself), detached. */
  take(node) {
    if (node.tagName === '#fragment') {
      const nodes = node.children;
      node.children = [];
      return nodes;
    }
    if (node.parentNode) {
      node.remove();
    }
    return [node];
  }

  insertBefore(node, reference) {
    const index = reference === null || reference === undefined
      ? this.children.length : this.children.indexOf(reference);
    if (index < 0) {
      throw new Error('insertBefore: not a child');
    }
    const nodes = this.take(node);
    for (const child of nodes) {
      child.parentNode = this;
    }
    this.children.splice(index, 0, ...nodes);
    if (this.isConnected) {
      this.ownerDocument.insertions += 1;
    }
    this.ownerDocument.changed(this);
    return node;
  }

  appendChild(node) {
    return this.insertBefore(node, null);
  }

  append(...nodes) {
    for (const node of nodes) {
      this.appendChild(node);
    }
  }

  replaceChildren(...nodes) {
    this.removeAll();
    this.append(...nodes);
  }

  replaceWith(node) {
    const parent = this.parentNode;
    const index = parent.children.indexOf(this);
    parent.children.splice(index, 1);
    this.parentNode = null;
    parent.insertBefore(node, parent.children[index] || null);
  }

  remove() {
    const parent = this.parentNode;
    if (parent) {
      parent.children.splice(parent.children.indexOf(this), 1);
      this.parentNode = null;
      this.ownerDocument.changed(parent);
    }
  }

  // --- events ---

  addEventListener(name, listener) {
    if (!this.listeners.has(name)) {
      this.listeners.set(name, []);
    }
    this.listeners.get(name).push(listener);
  }

  dispatch(name) {
    for (const listener of this.listeners.get(name) || []) {
      listener({ type: name, target: this });
    }
  }

  // --- layout ---

  height() {
    if (this.hidden) {
      return 0;
    }
    if (this.fakeHeight !== null) {
      return this.fakeHeight;
    }
    if (this.classList.contains('message')) {
      return 50;
    }
    if (this.children.length) {
      return this.children.reduce((sum, child) => sum + child.height(), 0);
    }
    return this.text || this.html ? 20 : 0;
  }

  top() {
    const parent = this.parentNode;
    if (!parent) {
      return 0;
    }
    let top = parent.isRoot ? 0 : parent.top();
    for (const sibling of parent.children) {
      if (sibling === this) {
        break;
      }
      top += sibling.height();
    }
    return top;
  }

  /** Relative to the scrolling element (the root), as app.css makes it. */
  get offsetTop() {
    this.ownerDocument.read(this);
    return this.top();
  }

  get offsetHeight() {
    this.ownerDocument.read(this);
    return this.height();
  }

  get scrollHeight() {
    this.ownerDocument.read(this);
    return Math.max(this.height(), this.clientHeightValue);
  }

  get clientHeight() {
    this.ownerDocument.read(this);
    return this.clientHeightValue;
  }

  get scrollTop() {
    this.ownerDocument.read(this);
    return this.scrollTopValue;
  }

  /** As a browser: within 0 and the bottom (which needs the layout). */
  set scrollTop(value) {
    this.ownerDocument.read(this);
    const bottom = Math.max(this.height() - this.clientHeightValue, 0);
    this.scrollTopValue = Math.min(Math.max(Math.round(value), 0), bottom);
  }

  /** What the user does: scrolls, and the page hears of it. */
  scrollTo(value) {
    const bottom = Math.max(this.height() - this.clientHeightValue, 0);
    this.scrollTopValue = Math.min(Math.max(value, 0), bottom);
    this.dispatch('scroll');
  }
}

/** #message-list as index.html has it: the scrolling element (connected,
 * `height` px tall) holding #history-status, #messages and #no-messages,
 * and #new-messages beside it. */
function fakeMessageList(height) {
  const document = new FakeDocument();
  const list = document.createElement('div');
  list.isRoot = true;
  list.clientHeightValue = height || 500;
  const status = document.createElement('p');
  status.fakeHeight = 30;      // app.css: one line, also when empty
  const messages = document.createElement('div');
  const empty = document.createElement('p');
  empty.hidden = true;
  list.append(status, messages, empty);
  const notice = document.createElement('button');
  notice.hidden = true;
  document.dirty = true;
  return { document, list, status, messages, empty, notice };
}

export {
  fakeFetch, memoryStorage, jwt, HOUR, DAY, NOW, user, message, settle,
  fakeServer, query, FakeDocument, FakeElement, fakeMessageList,
};
