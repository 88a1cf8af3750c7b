// The libraries the modules use. The page loads them as classic scripts
// (static/vendor/), which run before any module does (module scripts are
// deferred), so they are globals here: Backbone publishes no ES module
// build to import. The unit tests set the same globals (tests/globals.js);
// jQuery is left out there, as the views that need it are not tested.

export const _ = globalThis._;
export const Backbone = globalThis.Backbone;
export const $ = globalThis.jQuery || null;

if (!_ || !Backbone) {
  throw new Error('underscore and Backbone must be loaded before the client');
}
