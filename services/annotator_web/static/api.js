// @ts-check
// The page's one door to the JSON API: errors become ApiFailure (status, kind, message from
// the server's JSON body); a lost connection or a 503 is retried with backoff while a banner
// says so (onConnection listeners), unless the caller asks for no retry.

export class ApiFailure extends Error {
  /** @param {number} status @param {string} kind @param {string} message */
  constructor(status, kind, message) {
    super(message);
    this.status = status;
    this.kind = kind;
  }
}

/** @type {((ok: boolean, detail: string) => void)[]} */
const listeners = [];
/** @type {(() => void)[]} */
let waiting = [];

/** @param {(ok: boolean, detail: string) => void} listener */
export function onConnection(listener) {
  listeners.push(listener);
}

/** @param {boolean} ok @param {string} detail */
function connection(ok, detail) {
  for (const l of listeners) l(ok, detail);
}

window.addEventListener("labelloop-retry", () => {
  const wake = waiting;
  waiting = [];
  for (const w of wake) w();
});

/** @param {number} ms */
function pause(ms) {
  return new Promise((resolve) => {
    const timer = window.setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      waiting = waiting.filter((w) => w !== done);
      resolve(undefined);
    }
    waiting.push(done);
  });
}

/**
 * Call the API. Resolves to the JSON body, or null for 204.
 * @param {string} method @param {string} path @param {unknown} [body]
 * @param {{keepalive?: boolean, retry?: boolean}} [options]
 * @returns {Promise<any>}
 */
export async function api(method, path, body, options = {}) {
  const retry = options.retry ?? true;
  for (let attempt = 0; ; attempt++) {
    /** @type {Response} */
    let response;
    try {
      response = await fetch(path, {
        method,
        credentials: "same-origin",
        keepalive: options.keepalive ?? false,
        headers: body === undefined ? {} : { "Content-Type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (err) {
      if (options.keepalive) throw new ApiFailure(0, "network", "the server cannot be reached");
      connection(false, "the server cannot be reached");
      if (!retry) throw new ApiFailure(0, "network", "the server cannot be reached");
      await pause(Math.min(1000 * 2 ** attempt, 10000));
      continue;
    }
    if (response.status === 204) {
      connection(true, "");
      return null;
    }
    const payload = await response.json().catch(() => ({}));
    if (response.status === 503 && payload.error === "unavailable") {
      connection(false, payload.message || "service unavailable");
      if (retry) {
        await pause(Math.min(1000 * 2 ** attempt, 10000));
        continue;
      }
    } else {
      connection(true, "");
    }
    if (!response.ok) {
      throw new ApiFailure(response.status, payload.error || "error", payload.message || response.statusText);
    }
    return payload;
  }
}
