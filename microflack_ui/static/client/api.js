// Every request to the server goes through Api: JSON in and out, the
// session's token, and a 401 reported so that the session is forgotten.

/** `url` with query parameters added (null/undefined ones left out). */
export function withQuery(url, params) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params || {})) {
    if (value !== null && value !== undefined) {
      query.set(name, String(value));
    }
  }
  const text = query.toString();
  return text ? `${url}?${text}` : url;
}

/** A failed request: `status` is the HTTP status (0 when the server
 * could not be reached), `message` the server's `error` if it sent one. */
export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.body = body;
  }
}

export class Api {
  /**
   * options.getToken()         the current token (or null)
   * options.onUnauthorized(t)  called when token t got a 401
   * options.fetch              window.fetch (replaceable in tests)
   */
  constructor(options) {
    this.getToken = options.getToken || function () { return null; };
    this.onUnauthorized = options.onUnauthorized || function () {};
    this.fetch = options.fetch || function (url, init) {
      return globalThis.fetch(url, init);
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
