// The connection's status line.

import { Backbone } from './libraries.js';

/** #connection-status: shown while polls fail. */
export const StatusView = Backbone.View.extend({
  initialize: function (options) {
    this.listenTo(options.chat, 'connection', this.render);
  },

  render: function (ok, error) {
    const detail = error && error.status ? ` (${error.message})` : '';
    this.$el
      .text(ok ? '' : `Cannot reach the server${detail}; retrying…`)
      .prop('hidden', Boolean(ok));
    return this;
  },
});
