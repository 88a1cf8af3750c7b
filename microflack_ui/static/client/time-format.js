// How a message's time reads, in the reader's locale and time zone.

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
export function formatTime(timestamp, options) {
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
export function formatFullTime(timestamp, options) {
  const opts = options || {};
  return dateFormat(opts.locale, {
    dateStyle: 'full', timeStyle: 'medium', timeZone: opts.timeZone,
  }).format(new Date(timestamp * 1000));
}
