// What the page loads as classic scripts before the client's modules run:
// static/client/libraries.js reads underscore and Backbone as globals.
// Imported by every test file before any client module (imports run in
// their order). Not a test file itself.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
globalThis._ = require('underscore');
globalThis.Backbone = require('backbone');
