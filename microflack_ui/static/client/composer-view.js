// The post box.

import { Backbone } from './libraries.js';

/** #post-form: the post box. */
export const ComposerView = Backbone.View.extend({
  events: {
    'submit #post-form': 'send',
    'keydown #message-input': 'keydown',
  },

  initialize: function (options) {
    this.chat = options.chat;
    this.transport = options.transport;
    this.messageList = options.messageList;
    this.$input = this.$('#message-input');
    this.$button = this.$('#post-button');
    this.$error = this.$('#post-error');
    this.listenTo(this.chat.session, 'change:token', this.clearError);
  },

  keydown: function (event) {
    const composing = event.originalEvent &&
      event.originalEvent.isComposing;
    if (event.key === 'Enter' && !event.shiftKey && !composing) {
      this.send(event);
    }
  },

  clearError: function () {
    this.$error.text('').prop('hidden', true);
  },

  send: async function (event) {
    event.preventDefault();
    const source = this.$input.val();
    if (!source.trim() || this.$button.prop('disabled')) {
      return;
    }
    this.clearError();
    this.$button.prop('disabled', true);
    try {
      await this.transport.postMessage(source);
      this.$input.val('');
      this.messageList.scrollToBottom();
    } catch (error) {
      if (error.status !== 401) {   // 401: logged out, form is gone
        this.$error.text(`Not sent: ${error.message}`).prop('hidden', false);
      }
    } finally {
      this.$button.prop('disabled', false);
      this.$input.trigger('focus');
    }
  },
});
