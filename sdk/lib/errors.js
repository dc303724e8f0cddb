// Relaycast browser SDK: the error type every module raises.

/** Error raised by a session; `status` is the HTTP status, 0 for a network error, null otherwise. */
export class RelaycastError extends Error {
  constructor(message, { status = null, body = '', retryAfter = null, cause } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'RelaycastError';
    this.status = status;
    this.body = body;
    this.retryAfter = retryAfter;
  }
}

/** `err` as a RelaycastError (wrapping anything else, e.g. a TypeError from the WebRTC API). */
export function asRelaycastError(err) {
  return err instanceof RelaycastError ? err : new RelaycastError(String(err?.message ?? err), { cause: err });
}
