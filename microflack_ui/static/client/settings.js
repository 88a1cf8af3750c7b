// The client's fixed settings: timing and page sizes. (What the server
// decides, such as Socket.IO or polling, comes from the page: start.js.)

export const POLL_INTERVAL = 1000;         // ms between two polls
export const MAX_RETRY_INTERVAL = 10000;   // polls slow down to this on errors
// ms between two "I am online" pings, unless the page says otherwise
export const PING_INTERVAL = 30000;
export const STORAGE_KEY = 'microflack.session';
export const SOCKETIO_PATH = '/socket.io'; // where the Socket.IO service answers
export const POST_TIMEOUT = 10000;         // ms to wait for post_message's ack

// Paging (issue 14). The first page fills the list: its height over the
// smallest height a message takes (a one-line message takes about 60 px;
// 40 leaves room for small fonts), within these bounds.
export const FIRST_PAGE_MIN = 20;
export const FIRST_PAGE_MAX = 100;
export const MIN_MESSAGE_HEIGHT = 40;      // px
// Older pages are larger: scrolling back asks less often.
export const OLDER_PAGE_SIZE = 50;
// Who is online: one page (the server's largest).
export const ONLINE_PAGE_SIZE = 500;
// Authors named in one GET /api/users?ids= (the server's largest page).
export const MAX_IDS = 500;
// Pages of a changes feed followed in one round; a client further behind
// starts again from the newest page.
export const MAX_CATCHUP_PAGES = 4;
// A page waits this long (ms) for its authors' names before it shows
// without them ("…" until they come).
export const AUTHORS_WAIT = 500;
// Older pages load while the reader is this many screens from the top.
export const PREFETCH_SCREENS = 1;
// The list sticks to the bottom when the reader is this close (px).
export const NEAR_BOTTOM = 48;
