/*
 * MicroFlack chat client (SPEC section 4, "ui"): the page's entry module.
 *
 * Everybody sees who is online and the chat, newest messages at the
 * bottom; logging in (registering a new nickname on the way) opens the
 * post box. All data comes from the REST API behind the load balancer
 * (/api/users, /api/tokens, /api/messages), on the page's own origin.
 *
 * The client is ES modules, one per part, loaded by the browser as they
 * are (no bundler); each imports the others by relative URL, which the
 * page's import map turns into the URL carrying the module's content hash
 * (see README, "The chat page"):
 *   settings.js            timing and page sizes
 *   libraries.js           underscore, Backbone, jQuery (classic scripts)
 *   credentials.js         the Basic auth header, a token's claims
 *   paging.js              reading pages, links and changes feeds
 *   time-format.js         a message's time, readable
 *   api.js                 fetch wrapper: JSON in and out, Bearer token, 401
 *   poller.js              runs a task again and again, never two at once
 *   models.js              User/Users, Message/Messages, Session, merging
 *   chat.js                the client's state and its REST operations
 *   polling-transport.js   updates by polling the changes feeds
 *   socket-transport.js    updates by Socket.IO pushes (SPEC section 5)
 *   *-view.js              Backbone views bound to index.html's elements
 *   message-element.js     one message's element
 *   start.js               reads the page's configuration, wires it all up
 *   main.js                this file: starts the page
 *
 * The server renders its settings into <script id="microflack-config"
 * type="application/json">; they are exposed as window.MICROFLACK
 * ({socketio: bool, version: string, ping_interval: seconds}). With
 * `socketio`, the page also loads socket.io-client (window.io) before the
 * modules run.
 *
 * Safety: nicknames, errors and message sources are inserted as text only.
 * The one thing inserted as HTML is a message's `html` (message-element.js),
 * which the messages service has sanitised (and the page's
 * Content-Security-Policy forbids inline scripts anyway).
 *
 * DOM hooks (stable; browser tests drive the page through them):
 *   #login-form            shown while logged out; holds:
 *     #nickname, #password, #login-button
 *     #login-error         shown (as text) when logging in failed
 *   #session-info          shown while logged in; holds:
 *     #current-user        the logged-in nickname
 *     #logout-button
 *   #user-list .user[data-id]        one per user online (offline users
 *                                    are not listed), by nickname;
 *                                    class .online, .me for the
 *                                    logged-in user
 *     .user .nickname
 *   #message-list          the scrolling list; holds:
 *     #history-status      above the messages; data-state "loading"
 *                          (an older page is on its way: "Loading older
 *                          messages…"), "complete" (the beginning of the
 *                          chat is shown), "more" or "unknown" (empty)
 *     #messages .message[data-id]    oldest first, newest at the bottom
 *                                    (by id); data-user-id; .mine for own
 *                                    messages
 *       .message .author   the author's nickname
 *       .message .time     <time datetime="ISO 8601">, readable text
 *       .message .body     the message's html (.pending while the server
 *                          has not rendered it: the source as text)
 *     #no-messages         shown while the chat has no message
 *   #new-messages          button, shown when messages arrived below while
 *                          the reader is scrolled back; scrolls down
 *   #post-form             shown while logged in; holds:
 *     #message-input       Enter sends, Shift+Enter starts a new line
 *     #post-button
 *   #post-error            shown when posting failed
 *   #connection-status     shown while the server cannot be reached
 *                          (Socket.IO mode: while the socket is down)
 *   window.MicroFlack      {app, PollingTransport, SocketTransport}: app
 *                          is {chat, transport, pinger, messageList} of
 *                          the running page
 *
 * Browser tests: the page's Content-Security-Policy forbids eval, which
 * Playwright's wait_for_function(<string>) relies on; give such tests a
 * context made with bypass_csp=True (selectors and evaluate() work anyway).
 */
import { PollingTransport } from './polling-transport.js';
import { SocketTransport } from './socket-transport.js';
import { start } from './start.js';

// A module script runs once the document is parsed: the elements are
// there. A module's names are not globals, so the running page is
// published for browser tests and the developer console, with the
// transports' classes to tell which one runs.
globalThis.MicroFlack = { PollingTransport, SocketTransport };
globalThis.MicroFlack.app = start();
