// The list of who is online. (Views put text in as text, never as HTML.)

import { $, _, Backbone } from './libraries.js';
import { onlineUsers } from './models.js';

/** #user-list: one .user per user online. Users change often (every
 * ping changes last_seen_at), the list rarely: it is drawn again only
 * when what it shows changed. */
export const UserListView = Backbone.View.extend({
  initialize: function (options) {
    this.chat = options.chat;
    this.shown = null;    // what the list shows, as a string
    // Many events arrive per poll; draw once after them.
    this.scheduleRender = _.debounce(this.render.bind(this), 0);
    this.listenTo(this.collection, 'update reset sort change',
      this.scheduleRender);
    this.listenTo(this.chat.session, 'change:userId',
      this.scheduleRender);
  },

  render: function () {
    const me = this.chat.session.get('userId');
    const users = onlineUsers(this.collection.toJSON());
    const shown = JSON.stringify(users.map(
      (user) => [user.id, user.nickname, user.id === me]));
    if (shown === this.shown) {
      return this;
    }
    this.shown = shown;
    const items = users.map(function (user) {
      return $('<li class="user online">')
        .attr('data-id', user.id)
        .toggleClass('me', user.id === me)
        .attr('title', 'online')
        .append($('<span class="nickname">').text(user.nickname));
    });
    this.$el.empty().append(items);
    return this;
  },
});
