// One message as the page shows it: the one place where HTML from the
// server goes into the page.

import { formatFullTime, formatTime } from './time-format.js';

/** One .message element (made off the document): author, time and
 * the server's html. `author` is the name to show, `mine` whether it
 * is the reader's own. */
export function messageElement(document, message, author, mine) {
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
