// The Manager's event stream (Server-Sent Events), reconnecting by itself.

// After the browser gives up on a stream (it does for HTTP errors), wait this long before a new one,
// doubling up to the maximum while the Manager stays away.
const FIRST_RETRY_MS = 500;
const MAX_RETRY_MS = 5000;
// A page hidden this long (a background tab) lets go of its stream, so that other tabs on the same
// Manager keep connections to fetch with; it reconnects and re-fetches when shown again.
const HIDDEN_RELEASE_MS = 30000;

/**
 * One subscription to /api/v3/events.
 * handlers: {"/workers": fn(payload), ...}; onState(state) gets "connecting" | "live" | "reconnecting";
 * onReconnect() runs after every connection but the first, so views re-fetch what they may have missed.
 */
export class EventStream {
  constructor(query, handlers, { onState = () => {}, onReconnect = () => {} } = {}) {
    this.url = `/api/v3/events?${new URLSearchParams(query)}`;
    this.handlers = handlers;
    this.onState = onState;
    this.onReconnect = onReconnect;
    this.source = null;
    this.everOpened = false;
    this.retryMs = FIRST_RETRY_MS;
    this.retryTimer = null;
    this.closed = false;
    this.released = false;
    this.hiddenTimer = null;
    this.onVisibility = () => this.visibilityChanged();
    document.addEventListener("visibilitychange", this.onVisibility);
    this.open();
  }

  visibilityChanged() {
    clearTimeout(this.hiddenTimer);
    if (document.visibilityState === "hidden") {
      this.hiddenTimer = setTimeout(() => {
        this.released = true;
        clearTimeout(this.retryTimer);
        this.source.close();
      }, HIDDEN_RELEASE_MS);
    } else if (this.released && !this.closed) {
      this.released = false;
      this.open();
    }
  }

  open() {
    this.onState(this.everOpened ? "reconnecting" : "connecting");
    const source = new EventSource(this.url);
    this.source = source;
    source.addEventListener("open", () => {
      this.retryMs = FIRST_RETRY_MS;
      this.onState("live");
      if (this.everOpened) this.onReconnect();
      this.everOpened = true;
    });
    source.addEventListener("error", () => {
      if (this.closed || this.released) return;
      this.onState("reconnecting");
      if (source.readyState === EventSource.CLOSED) this.scheduleReopen();
    });
    for (const [topic, handler] of Object.entries(this.handlers)) {
      source.addEventListener(topic, (event) => {
        let payload;
        try {
          payload = JSON.parse(event.data);
        } catch {
          return;
        }
        handler(payload);
      });
    }
  }

  scheduleReopen() {
    this.source.close();
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.open(), this.retryMs);
    this.retryMs = Math.min(this.retryMs * 2, MAX_RETRY_MS);
  }

  close() {
    this.closed = true;
    document.removeEventListener("visibilitychange", this.onVisibility);
    clearTimeout(this.hiddenTimer);
    clearTimeout(this.retryTimer);
    if (this.source) this.source.close();
  }
}
