// Fakes and fixtures shared by the unit tests (not a test file itself).
'use strict';

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

module.exports = {
  fakeFetch, memoryStorage, jwt, HOUR, NOW, user, message, settle,
};
