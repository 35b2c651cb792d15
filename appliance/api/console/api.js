// Talking to the spoke's REST API: one place for the bearer token (kept in
// this tab's sessionStorage, never in a cookie, so no request is sent with
// credentials the page did not add itself) and for turning every failure
// into a message that says what to do next.

const KEY = 'eurocomply.session';

/** An API failure: HTTP status, the API's stable `kind` and its message. */
export class ApiError extends Error {
  constructor(status, kind, message) {
    super(message);
    this.status = status;
    this.kind = kind;
  }
}

/** The stored session ({secret, user, role, allowed}) or null. */
export function session() {
  try {
    return JSON.parse(sessionStorage.getItem(KEY) || 'null');
  } catch {
    return null;
  }
}

function forget() {
  sessionStorage.removeItem(KEY);
}

/**
 * Calls the API. `body` is sent as JSON unless `raw` bytes are given (then
 * as `contentType`). Resolves to the parsed reply (a Blob with `blob: true`);
 * rejects with ApiError.
 */
export async function call(method, path, { body, raw, contentType, blob } = {}) {
  const headers = {};
  const s = session();
  if (s && s.secret) headers.authorization = `Bearer ${s.secret}`;
  let payload;
  if (raw !== undefined) {
    payload = raw;
    headers['content-type'] = contentType || 'application/octet-stream';
  } else if (body !== undefined) {
    payload = JSON.stringify(body);
    headers['content-type'] = 'application/json';
  }
  let res;
  try {
    res = await fetch(path, { method, headers, body: payload, credentials: 'omit', cache: 'no-store' });
  } catch {
    throw new ApiError(0, 'network',
      'The spoke did not answer. Check that `spoke serve` is running and this device is on its network, then try again.');
  }
  if (res.status === 204) return null;
  if (blob && res.ok) return res.blob();
  const text = await res.text();
  let data = text;
  try {
    data = JSON.parse(text);
  } catch {
    // Not JSON (a document's content): hand back the text.
  }
  if (!res.ok) {
    const e = data && data.error ? data.error : {};
    if (res.status === 401 && s) {
      forget();
      throw new ApiError(401, e.kind || 'unauthenticated',
        'Your session has ended (signed out, expired or revoked). Sign in again.');
    }
    throw new ApiError(res.status, e.kind || `http_${res.status}`,
      e.message || `The spoke answered ${res.status}. Try again; if it persists, an administrator can check the spoke's log.`);
  }
  return data;
}

/** Signs in; stores the token and what its role may call. */
export async function signIn(user, password) {
  forget();
  const issued = await call('POST', '/api/v1/session', { body: { user, password } });
  sessionStorage.setItem(KEY, JSON.stringify({ secret: issued.secret }));
  return whoami();
}

/** Asks the spoke who the stored token belongs to (refreshing the stored role). */
export async function whoami() {
  const me = await call('GET', '/api/v1/session');
  const s = session();
  if (!s) throw new ApiError(401, 'unauthenticated', 'Sign in to continue.');
  sessionStorage.setItem(KEY, JSON.stringify({ ...s, ...me }));
  return session();
}

/** Signs out: revokes the token on the spoke, then forgets it here. */
export async function signOut() {
  try {
    await call('DELETE', '/api/v1/session');
  } finally {
    forget();
  }
}

/** Whether the signed-in role may call `METHOD path` (as the route table says). */
export function can(me, method, path) {
  return Boolean(me && me.allowed && me.allowed.includes(`${method} ${path}`));
}
