// The Backbone models and collections, and how the REST API's models
// (plain objects) are merged into them.

import { Backbone } from './libraries.js';
import { hasId } from './paging.js';

/** Merges models (plain objects) into a Backbone collection by id.
 * A model is only replaced by a version at least as recent
 * (`updated_at`); with `onlyNew`, existing models are left alone (for
 * answers that may be older than what polling already brought, such as
 * a freshly posted message whose html is rendered later). */
export function mergeModels(collection, items, options) {
  const onlyNew = Boolean(options && options.onlyNew);
  const accepted = items.filter(function (item) {
    if (!hasId(item)) {
      return false;
    }
    const existing = collection.get(item.id);
    if (!existing) {
      return true;
    }
    return !onlyNew && !(existing.get('updated_at') > item.updated_at);
  });
  collection.set(accepted, { add: true, merge: true, remove: false });
  return accepted.length;
}

/** Order of the user list: online users first, then by nickname. */
export function compareUsers(a, b) {
  if (Boolean(a.online) !== Boolean(b.online)) {
    return a.online ? -1 : 1;
  }
  const byName = String(a.nickname).localeCompare(
    String(b.nickname), undefined, { sensitivity: 'base' });
  return byName || a.id - b.id;
}

/** The users to list (plain objects): those online, in list order. */
export function onlineUsers(users) {
  return users.filter((user) => user.online).sort(compareUsers);
}
export const User = Backbone.Model.extend({});

export const Users = Backbone.Collection.extend({
  model: User,
  comparator: 'id',
});

export const Message = Backbone.Model.extend({});

/** Messages in the order they were stored (their ids): the order of
 * the pages, and editing keeps a message's place. */
export const Messages = Backbone.Collection.extend({
  model: Message,
  comparator: 'id',
});

/** Who is logged in: {token, userId, nickname}, all null when nobody. */
export const Session = Backbone.Model.extend({
  defaults: { token: null, userId: null, nickname: null },

  isLoggedIn: function () {
    return Boolean(this.get('token'));
  },
});
