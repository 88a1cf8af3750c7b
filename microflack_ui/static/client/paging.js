// Reading the paged lists of the REST API (issue 14; the contract is
// the answers' `_meta` and `_links`): pages, their links, the changes
// feeds' cursors. Pure functions.
//
// An old service (during a rolling upgrade) ignores the paging parameters
// and answers a plain list: it is then the whole list, and its changes
// feed is the list asked for from the newest change it brought.

import {
  FIRST_PAGE_MAX, FIRST_PAGE_MIN, MIN_MESSAGE_HEIGHT,
} from './settings.js';

/** Largest `updated_at` of a list of models (plain objects), or null. */
export function latestUpdate(items) {
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
export function updatedSince(latest) {
  return latest === null ? null : latest - 1;
}

/** Whether `item` can go into a collection (a model with an id). */
export function hasId(item) {
  return Boolean(item) && typeof item === 'object' &&
    item.id !== undefined && item.id !== null;
}
/** What a list answer holds, whether the server paged it or not:
 * {items, paged, more, next, updates, updatedSince}. An answer without
 * `_meta` (an old service, or a list that is not paged) is the whole
 * list: no more pages, no links. */
export function readPage(data, name) {
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
export function withParams(link, params) {
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
export function linkNumber(link, name) {
  const value = new URL(link, LINK_BASE).searchParams.get(name);
  const number = value === null || value === '' ? NaN : Number(value);
  return Number.isFinite(number) ? number : null;
}

/** Where a changes feed continues after the answer `page` to `url`:
 * the answer's `next`; for an old service's plain list, `url` asked
 * from the newest change it brought (as before paging existed). */
export function nextFeedLink(url, page) {
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
export function firstFeedLink(url, page) {
  if (page.updates) {
    return page.updates;
  }
  const latest = latestUpdate(page.items);
  return latest === null ? url
    : withParams(url, { updated_since: updatedSince(latest) });
}

/** Size of the first page of messages for a list `height` px tall. */
export function pageSizeFor(height) {
  const fitting = Math.ceil((Number(height) || 0) / MIN_MESSAGE_HEIGHT);
  return Math.min(Math.max(fitting, FIRST_PAGE_MIN), FIRST_PAGE_MAX);
}

/** `items` in lists of at most `size`. */
export function chunks(items, size) {
  const lists = [];
  for (let i = 0; i < items.length; i += size) {
    lists.push(items.slice(i, i + size));
  }
  return lists;
}
