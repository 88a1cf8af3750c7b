// Credentials: the Basic auth header that logs in, and what the client
// reads from a token (its claims).

/** `Authorization` value for HTTP Basic auth. The credentials are UTF-8
 * encoded first: btoa() alone only accepts Latin-1 characters. */
export function basicAuthHeader(nickname, password) {
  const bytes = new TextEncoder().encode(`${nickname}:${password}`);
  let binary = '';
  for (const byte of bytes) {
    binary += String.fromCharCode(byte);
  }
  return `Basic ${globalThis.btoa(binary)}`;
}

/** The claims of a JWT ({user_id, exp}), or null if it is not one. The
 * signature is the server's business; the client only reads them. */
export function tokenClaims(token) {
  try {
    const payload = String(token).split('.')[1]
      .replace(/-/g, '+').replace(/_/g, '/');
    const padded = payload + '='.repeat((4 - payload.length % 4) % 4);
    const claims = JSON.parse(globalThis.atob(padded));
    return claims && typeof claims === 'object' ? claims : null;
  } catch (error) {
    return null;
  }
}
