// Unit tests of the message list (static/client/message-list-view.js) on a
// fake DOM that counts what a browser would do (fakes.fakeMessageList):
// DOM insertions and forced layouts per change, where the reader's view
// goes. `npm test`.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import './globals.js';
import { Chat } from '../static/client/chat.js';
import { MessageListView } from '../static/client/message-list-view.js';
import { mergeModels } from '../static/client/models.js';
import {
  fakeFetch, memoryStorage, NOW, user, message, settle, fakeServer,
  fakeMessageList,
} from './fakes.js';

const LATER = NOW + 10000;
const HEIGHT = 500;          // the list's height (px)
const STATUS = 30;           // #history-status (px)
const MESSAGE = 50;          // a message (px)

function history(count, authors) {
  return Array.from({ length: count },
    (_unused, i) => message(i + 1, (i % (authors || 10)) + 1));
}

function people(count) {
  return Array.from({ length: count }, (_unused, i) => user(i + 1, `u${i + 1}`));
}

/** A chat on a fake server, its message list on a fake DOM. */
function setup(state, options) {
  const server = Object.assign({ now: LATER }, state);
  const fetch = fakeFetch(fakeServer(server));
  const chat = new Chat(Object.assign({ fetch, storage: memoryStorage(),
    now: () => server.now * 1000, pageSize: 20 }, options));
  const dom = fakeMessageList(HEIGHT);
  const list = new MessageListView({ el: dom.list, messages: dom.messages,
    status: dom.status, empty: dom.empty, notice: dom.notice,
    collection: chat.messages, chat });
  return { chat, fetch, server, dom, list };
}

/** What happened in the fake document while `action` ran. */
async function counting(dom, action) {
  const before = dom.document.counts();
  await action();
  for (let i = 0; i < 5; i++) {
    await settle();
  }
  const after = dom.document.counts();
  return { insertions: after.insertions - before.insertions,
    reads: after.reads - before.reads, layouts: after.layouts - before.layouts };
}

function shownIds(dom) {
  return dom.messages.children.map((element) => Number(element.getAttribute('data-id')));
}

/** The screen position of message `id` (px from the top of the list's
 * visible part). */
function onScreen(dom, id) {
  const element = dom.messages.children.find(
    (child) => child.getAttribute('data-id') === String(id));
  return element.top() - dom.list.scrollTopValue;
}

function bottom(dom) {
  return dom.list.height() - HEIGHT;
}

describe('MessageListView: drawing pages', () => {
  it('draws the first page in one insertion, at the bottom', async () => {
    const { chat, dom } = setup({ messages: history(300), users: people(10) },
      { pageSize: 40 });
    const counts = await counting(dom, () => chat.refresh());
    assert.deepEqual(shownIds(dom), _range(261, 300));
    assert.equal(counts.insertions, 1);
    assert.ok(counts.layouts <= 2, `${counts.layouts} layouts`);
    assert.equal(dom.list.scrollTopValue, bottom(dom));
    assert.equal(dom.messages.children[0].find('.author').textContent, 'u1');
  });

  it('puts an older page above in one insertion, without moving what the reader sees', async () => {
    const { chat, fetch, dom } = setup({ messages: history(300), users: people(10) },
      { pageSize: 40 });
    await chat.refresh();
    // 40 messages, 2030 px: at the bottom, no older page is needed yet
    dom.list.scrollTo(1200);
    assert.equal(chat.historyState(), 'more');
    const from = fetch.calls.length;
    const counts = await counting(dom, async () => {
      dom.list.scrollTo(300);              // a screen from the top
      await chat.olderLoading;
    });
    assert.deepEqual(fetch.calls.slice(from).map((c) => c.url),
      ['/api/messages?before=261&limit=50']);
    assert.deepEqual(shownIds(dom), _range(211, 300));
    assert.equal(counts.insertions, 1);
    assert.ok(counts.layouts <= 2, `${counts.layouts} layouts`);
    // 266 was the first in view (280..330 px): still 20 px above the top
    assert.equal(dom.list.scrollTopValue, 300 + 50 * MESSAGE);
    assert.equal(onScreen(dom, 266), -20);
    assert.equal(chat.historyState(), 'more');
  });

  it('keeps the first message in view in place when scrolled to the very top', async () => {
    const { chat, dom } = setup({ messages: history(300), users: people(10) },
      { pageSize: 40 });
    await chat.refresh();
    dom.list.scrollTo(0);                  // an older page loads
    assert.equal(chat.historyState(), 'loading');
    const where = onScreen(dom, 261);
    assert.equal(where, STATUS);
    await chat.olderLoading;
    await settle();
    assert.equal(shownIds(dom)[0], 211);
    assert.equal(onScreen(dom, 261), where);
  });

  it('loads older pages while the list is still near the top, to the beginning', async () => {
    const { chat, fetch, dom } = setup({ messages: history(120), users: people(10) });
    await chat.refresh();
    dom.list.scrollTo(0);
    for (let i = 0; i < 10 && chat.historyState() !== 'complete'; i++) {
      await chat.olderLoading;
      await settle();
      dom.list.scrollTo(0);
    }
    assert.deepEqual(shownIds(dom), _range(1, 120));
    const older = fetch.calls.filter((c) => c.url.includes('before=')).length;
    assert.equal(older, 2);                // 100 above the first 20: 50 + 50
    assert.equal(dom.status.getAttribute('data-state'), 'complete');
    assert.equal(dom.status.textContent, 'Beginning of the chat');
  });

  it('says when an older page is loading, one at a time', async () => {
    const { chat, fetch, dom } = setup({ messages: history(300), users: people(10) },
      { pageSize: 40 });
    await chat.refresh();
    const from = fetch.calls.length;
    dom.list.scrollTo(100);
    dom.list.scrollTo(50);
    dom.list.scrollTo(0);
    assert.equal(dom.status.getAttribute('data-state'), 'loading');
    assert.equal(dom.status.textContent, 'Loading older messages…');
    await chat.olderLoading;
    assert.equal(fetch.calls.slice(from).filter((c) => c.url.includes('before=')).length, 1);
  });

  it('says "No messages yet." for an empty chat, nothing before the first page', async () => {
    const { chat, dom } = setup({ messages: [], users: [] });
    assert.equal(dom.empty.hidden, true);
    await chat.refresh();
    assert.equal(dom.empty.hidden, false);
    assert.equal(dom.status.textContent, '');
    chat.applyUpdate('Message', message(1, 1));
    await settle();
    assert.equal(dom.empty.hidden, true);
    assert.deepEqual(shownIds(dom), [1]);
  });
});

describe('MessageListView: live changes', () => {
  it('at the bottom, follows new messages', async () => {
    const { chat, dom } = setup({ messages: history(20), users: people(10) });
    await chat.refresh();
    assert.equal(dom.list.scrollTopValue, bottom(dom));
    chat.applyUpdate('Message', message(21, 1));
    chat.applyUpdate('Message', message(22, 2));
    const counts = await counting(dom, () => {});
    assert.equal(counts.insertions, 1);     // both in one go
    assert.equal(dom.list.scrollTopValue, bottom(dom));
    assert.equal(dom.notice.hidden, true);
  });

  it('scrolled back, stays in place and shows the notice; scrolling down hides it', async () => {
    const { chat, dom } = setup({ messages: history(20), users: people(10) });
    await chat.refresh();
    dom.list.scrollTo(100);
    const before = onScreen(dom, 5);
    chat.applyUpdate('Message', message(21, 1));
    await settle();
    assert.deepEqual(shownIds(dom).slice(-2), [20, 21]);
    assert.equal(dom.list.scrollTopValue, 100);
    assert.equal(onScreen(dom, 5), before);
    assert.equal(dom.notice.hidden, false);
    dom.list.scrollTo(bottom(dom));
    assert.equal(dom.notice.hidden, true);
    dom.list.scrollTo(0);
    chat.applyUpdate('Message', message(22, 1));
    await settle();
    assert.equal(dom.notice.hidden, false);
    dom.notice.dispatch('click');          // the notice scrolls down
    assert.equal(dom.list.scrollTopValue, bottom(dom));
    assert.equal(dom.notice.hidden, true);
  });

  it('an edit is drawn again in its place', async () => {
    const { chat, dom } = setup({ messages: history(20), users: people(10) });
    await chat.refresh();
    chat.applyUpdate('Message', message(10, 1, { html: '<em>new</em>', updated_at: LATER }));
    await settle();
    assert.deepEqual(shownIds(dom), _range(1, 20));
    const body = dom.messages.children[9].find('.body');
    assert.equal(body.innerHTML, '<em>new</em>');
  });

  it('authors\' names arriving are drawn in one pass, not per author', async () => {
    const { chat, dom } = setup({ messages: history(20), users: people(10) });
    await chat.refresh();
    chat.messages.reset(history(200, 20).map((m) => Object.assign(m, { id: m.id + 1000 })));
    // authors 1..10 are known, 11..20 not yet
    assert.equal(dom.messages.children[10].find('.author').textContent, '…');
    const counts = await counting(dom, () => {
      mergeModels(chat.users, Array.from({ length: 10 },
        (_u, i) => user(11 + i, `v${11 + i}`)));
      chat.users.get(1).set('nickname', 'renamed');
    });
    assert.ok(counts.layouts <= 2, `${counts.layouts} layouts`);
    const names = dom.messages.children.map((el) => el.find('.author').textContent);
    assert.equal(names[0], 'renamed');
    assert.equal(names[10], 'v11');
    assert.equal(names.includes('…'), false);
  });

  it('marks the reader\'s own messages when logging in', async () => {
    const { chat, dom } = setup({ messages: history(20, 2), users: people(2) });
    await chat.refresh();
    assert.equal(dom.messages.children.some((el) => el.classList.contains('mine')), false);
    chat.session.set('userId', 2);
    await settle();
    const mine = dom.messages.children.filter((el) => el.classList.contains('mine'))
      .map((el) => Number(el.getAttribute('data-user-id')));
    assert.equal(mine.length, 10);
    assert.deepEqual(new Set(mine), new Set([2]));
  });

  it('inserts text as text: only the server\'s html is HTML', async () => {
    const { chat, dom } = setup({ users: [user(1, '<i>me</i>')],
      messages: [message(1, 1, { html: '', source: '<b>raw</b>' }),
        message(2, 1, { html: 'hello <em>you</em>' })] });
    await chat.refresh();
    const [pending, rendered] = dom.messages.children;
    assert.equal(pending.find('.body').textContent, '<b>raw</b>');
    assert.equal(pending.find('.body').innerHTML, null);
    assert.equal(pending.find('.body').className, 'body pending');
    assert.equal(pending.find('.author').textContent, '<i>me</i>');
    assert.equal(pending.find('.author').innerHTML, null);
    assert.equal(rendered.find('.body').innerHTML, 'hello <em>you</em>');
  });
});

function _range(first, last) {
  return Array.from({ length: last - first + 1 }, (_u, i) => first + i);
}
