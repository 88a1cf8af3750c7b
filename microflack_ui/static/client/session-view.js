// Logging in and out. (Views put text in as text, never as HTML.)

import { Backbone } from './libraries.js';

/** #login-form (logged out) and #session-info (logged in). */
export const SessionView = Backbone.View.extend({
  events: {
    'submit #login-form': 'login',
    'click #logout-button': 'logout',
  },

  initialize: function (options) {
    this.chat = options.chat;
    this.$form = this.$('#login-form');
    this.$nickname = this.$('#nickname');
    this.$password = this.$('#password');
    this.$button = this.$('#login-button');
    this.$error = this.$('#login-error');
    this.$info = this.$('#session-info');
    this.$postForm = this.$('#post-form');
    this.listenTo(this.chat.session, 'change', this.render);
  },

  render: function () {
    const loggedIn = this.chat.session.isLoggedIn();
    this.$form.prop('hidden', loggedIn);
    this.$info.prop('hidden', !loggedIn);
    this.$postForm.prop('hidden', !loggedIn);
    this.$('#current-user').text(this.chat.session.get('nickname') || '');
    if (loggedIn) {
      this.showError(null);
      this.$password.val('');
      this.$('#message-input').trigger('focus');
    }
    return this;
  },

  showError: function (text) {
    this.$error.text(text || '').prop('hidden', !text);
  },

  login: async function (event) {
    event.preventDefault();
    this.showError(null);
    this.$button.prop('disabled', true);
    try {
      await this.chat.login(this.$nickname.val().trim(),
        this.$password.val());
    } catch (error) {
      this.showError(error.message);
      this.$password.trigger('focus').trigger('select');
    } finally {
      this.$button.prop('disabled', false);
    }
  },

  logout: function () {
    this.chat.logout();
  },
});
