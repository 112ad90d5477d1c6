// herald.js: the browser client of a Herald (Mercure) hub. Plain ES module, no build step, no
// dependencies. Served by every hub at /herald.js; types in herald.d.ts.
//
//   import { subscribe } from 'https://hub.example.com/herald.js';
//   const sub = subscribe('https://hub.example.com/.well-known/mercure', { topics: ['chat'] });
//   sub.addEventListener('message', (e) => console.log(e.topic, e.data));
//
// Transports: the native EventSource when `shared: false` and no token or header is needed;
// otherwise fetch() with a streaming body and an incremental parser that follows the WHATWG
// event-stream rules. With `shared` (the default) the tabs of an origin that use the same hub with
// the same credentials share ONE hub connection: a leader tab (Web Locks) holds it, subscribed to
// the union of every tab's selectors, and passes each event over a BroadcastChannel; every tab
// keeps the events its own selectors match (the hub names each event's topic: `herald-topic=1`).

/**
 * @typedef {Object} SubscribeOptions
 * @property {string[]} [topics] 0.x selectors: exact topics, `*` or URI templates.
 * @property {string[]} [match] 1.0 selectors (`match=`).
 * @property {string[]} [matchUrlPattern] 1.0 URL patterns (`match_urlpattern=`).
 * @property {string} [token] Sent as `Authorization: Bearer`, never in the URL.
 * @property {Record<string, string>} [headers] Extra request headers.
 * @property {boolean} [withCredentials] Send cookies (cookie-token deployments).
 * @property {string} [lastEventId] Where to start (`earliest` for all of history).
 * @property {boolean} [json] Parse `event.data` as JSON; a failure is an `error` event.
 * @property {boolean} [shared] One hub connection per browser (default true).
 */

/** @typedef {{type: string, data: string, id: string, topic: (string|undefined)}} RawEvent */
/** @typedef {{topics: string[], match: string[], matchUrlPattern: string[]}} Selectors */

const GAP = 'herald-gap';
const MAX_DELAY = 30000;

/** A `message` or named event, with the update's canonical topic. */
export class HeraldEvent extends MessageEvent {
  /**
   * @param {string} type
   * @param {MessageEventInit} init
   * @param {string|undefined} topic
   */
  constructor(type, init, topic) {
    super(type, init);
    /** @type {string|undefined} */
    this.topic = topic;
  }
}

/**
 * An incremental parser of `text/event-stream` (WHATWG rules): CR, LF and CRLF line ends, one
 * leading BOM, multi-line `data`, `id` persisting across events (ignored when it holds NUL),
 * `retry`, comments. Herald's `topic` field is kept with each event.
 * @param {(event: RawEvent) => void} onEvent
 * @param {(ms: number) => void} [onRetry]
 * @returns {{feed: (text: string) => void, lastId: () => string}}
 */
export function parser(onEvent, onRetry) {
  let buffer = '';
  let started = false;
  let skipLF = false;
  let data = '';
  let type = '';
  let id = '';
  /** @type {string|undefined} */
  let topic;
  const line = (/** @type {string} */ text) => {
    if (text === '') {
      if (data !== '') onEvent({type: type || 'message', data: data.slice(0, -1), id, topic});
      data = type = '';
      topic = undefined;
      return;
    }
    const colon = text.indexOf(':');
    if (colon === 0) return;
    const field = colon < 0 ? text : text.slice(0, colon);
    let value = colon < 0 ? '' : text.slice(colon + 1);
    if (value[0] === ' ') value = value.slice(1);
    if (field === 'data') data += value + '\n';
    else if (field === 'event') type = value;
    else if (field === 'id') { if (!value.includes('\0')) id = value; }
    else if (field === 'retry') { if (/^\d+$/.test(value) && onRetry) onRetry(Number(value)); }
    else if (field === 'topic') topic = topic === undefined ? value : `${topic}\n${value}`;
  };
  return {
    feed(text) {
      if (!started && text) {
        started = true;
        if (text[0] === '\uFEFF') text = text.slice(1);
      }
      if (skipLF && text) {
        skipLF = false;
        if (text[0] === '\n') text = text.slice(1);
      }
      buffer += text;
      const ends = /\r\n|\r|\n/g;
      let start = 0;
      let found;
      while ((found = ends.exec(buffer))) {
        // A CR at the very end may be the first half of a CRLF split across chunks.
        if (found[0] === '\r' && found.index === buffer.length - 1) skipLF = true;
        line(buffer.slice(start, found.index));
        start = ends.lastIndex;
      }
      buffer = buffer.slice(start);
    },
    lastId: () => id,
  };
}

/**
 * A matcher for one 0.x selector: `*`, an exact topic, or an RFC 6570 URI template (operators
 * `+ # . / ; ? &`, lists, explode and prefixes; values as the hub accepts them).
 * @param {string} selector
 * @returns {(topic: string) => boolean}
 */
export function topicMatcher(selector) {
  if (selector === '*') return () => true;
  if (!selector.includes('{')) return (topic) => topic === selector;
  const pct = '%[0-9A-Fa-f]{2}';
  const unreserved = `(?:[A-Za-z0-9\\-._~]|${pct})`;
  const reserved = `(?:[A-Za-z0-9\\-._~:/?#\\[\\]@!$&'()*+,;=]|${pct})`;
  const quote = (/** @type {string} */ text) => text.replace(/[\\^$.*+?()[\]{}|/-]/g, '\\$&');
  /** @type {Record<string, string>} */
  const forms = {
    '': `(?:${unreserved}|,)*`,
    '+': `${reserved}*`,
    '#': `(?:#${reserved}*)?`,
    '.': `(?:\\.(?:${unreserved}|[,=])*)*`,
    '/': `(?:/(?:${unreserved}|[,=])*)*`,
    ';': `(?:;(?:${unreserved}|[,=])*)*`,
    '?': `(?:\\?(?:${unreserved}|[,=&])*)?`,
    '&': `(?:&(?:${unreserved}|[,=])*)*`,
  };
  let source = '';
  let last = 0;
  let valid = true;
  selector.replace(/\{([^{}]*)\}/g, (whole, expression, offset) => {
    source += quote(selector.slice(last, offset));
    last = offset + whole.length;
    const operator = /^[+#./;?&]/.test(expression) ? expression[0] : '';
    const names = expression.slice(operator.length);
    if (!/^[A-Za-z0-9_%.]+(?::\d{1,4}|\*)?(?:,[A-Za-z0-9_%.]+(?::\d{1,4}|\*)?)*$/.test(names)) valid = false;
    source += forms[operator];
    return whole;
  });
  source += quote(selector.slice(last));
  if (!valid || /[{}]/.test(selector.replace(/\{[^{}]*\}/g, ''))) return (topic) => topic === selector;
  const pattern = new RegExp(`^${source}$`);
  return (topic) => pattern.test(topic);
}

/**
 * Whether `selectors` select an event of `topic` (client-side routing of a shared connection).
 * An unknown topic, or a URL pattern the browser cannot evaluate, is delivered.
 * @param {Selectors} selectors
 * @returns {(topic: string|undefined) => boolean}
 */
function selectorMatcher(selectors) {
  const tests = selectors.topics.map(topicMatcher);
  for (const exact of selectors.match) tests.push((topic) => topic === exact);
  for (const pattern of selectors.matchUrlPattern) {
    const URLPatternClass = /** @type {any} */ (globalThis).URLPattern;
    if (!URLPatternClass) return () => true;
    const compiled = new URLPatternClass(pattern);
    tests.push((topic) => { try { return compiled.test(topic); } catch { return false; } });
  }
  return (topic) => topic === undefined || tests.some((test) => test(topic));
}

/**
 * The subscribe URL for `selectors`.
 * @param {string} hub
 * @param {Selectors} selectors
 * @param {boolean} topicField
 * @param {string} [lastEventId] only for the native EventSource, which cannot send headers
 */
function streamUrl(hub, selectors, topicField, lastEventId) {
  const url = new URL(hub, globalThis.location?.href);
  for (const topic of selectors.topics) url.searchParams.append('topic', topic);
  for (const match of selectors.match) url.searchParams.append('match', match);
  for (const pattern of selectors.matchUrlPattern) url.searchParams.append('match_urlpattern', pattern);
  if (topicField) url.searchParams.set('herald-topic', '1');
  if (lastEventId !== undefined) url.searchParams.set('lastEventID', lastEventId);
  return url.href;
}

/** The problem+json `detail` of a refused response, or its status line. */
async function problemDetail(/** @type {Response} */ response) {
  try {
    const problem = await response.json();
    if (problem && typeof problem.detail === 'string') return problem.detail;
  } catch { /* not JSON */ }
  return `${response.status} ${response.statusText}`.trim();
}

/** Jittered exponential backoff, capped: half to all of `base * 2^attempt`. */
function backoff(/** @type {number} */ base, /** @type {number} */ attempt) {
  const ceiling = Math.min(MAX_DELAY, base * 2 ** Math.min(attempt, 16));
  return ceiling / 2 + Math.random() * ceiling / 2;
}

/**
 * @typedef {Object} Sink
 * @property {(event: RawEvent) => void} event
 * @property {(state: string, detail?: string) => void} state
 * @property {(detail: unknown) => void} gap
 * @property {() => (string|undefined)} lastId the id to resume after
 * @property {(id: string) => void} cursor where the hub started a stream that resumed from
 *   nothing (its `Last-Event-ID` response header): kept unless an event came since
 */

/**
 * One hub connection over fetch, reconnecting until stopped: resumes with `Last-Event-ID`, backs
 * off (honouring `retry:`), stops for good on 401/403, retries at once when the browser comes
 * back online.
 */
class FetchStream {
  /**
   * @param {string} url
   * @param {SubscribeOptions} options
   * @param {Sink} sink
   */
  constructor(url, options, sink) {
    this.url = url;
    this.options = options;
    this.sink = sink;
    this.stopped = false;
    this.retry = 1000;
    /** @type {AbortController|null} */
    this.abort = null;
    /** @type {(() => void)|null} */
    this.wake = null;
    this.online = () => this.wake?.();
    globalThis.addEventListener?.('online', this.online);
    /** @type {Promise<void>} resolves once the first response is open (or the stream ends) */
    this.opened = new Promise((resolve) => { this.markOpen = resolve; });
    queueMicrotask(() => this.run());
  }

  stop() {
    this.stopped = true;
    this.abort?.abort();
    this.wake?.();
    this.markOpen();
    globalThis.removeEventListener?.('online', this.online);
  }

  async run() {
    const {token, headers, withCredentials} = this.options;
    let attempt = 0;
    let wasOpen = false;
    while (!this.stopped) {
      this.sink.state(wasOpen ? 'reconnecting' : 'connecting');
      const abort = (this.abort = new AbortController());
      /** @type {Record<string, string>} */
      const sent = {accept: 'text/event-stream', ...headers};
      if (token) sent.authorization = `Bearer ${token}`;
      const resumeFrom = this.sink.lastId();
      if (resumeFrom !== undefined && resumeFrom !== '') sent['last-event-id'] = resumeFrom;
      try {
        const response = await fetch(this.url, {
          headers: sent, signal: abort.signal, cache: 'no-store',
          credentials: withCredentials ? 'include' : 'same-origin',
        });
        // 401, 403 and other refusals are final (as with EventSource); 408 and 429 are retried.
        if (response.status >= 400 && response.status < 500 && response.status !== 408 && response.status !== 429) {
          const detail = await problemDetail(response);
          if (!this.stopped) {
            this.stop();
            this.sink.state('closed', detail);
          }
          return;
        }
        const type = response.headers.get('content-type') || '';
        if (!response.ok || !response.body || !type.startsWith('text/event-stream')) {
          throw new Error(`${response.status} ${type}`);
        }
        let gapped = false;
        const cursor = response.headers.get('mercure-last-event-id');
        if (cursor !== null && resumeFrom && resumeFrom !== 'earliest' && cursor !== resumeFrom) {
          gapped = true;
          this.sink.gap({lastEventID: resumeFrom, oldestEventID: cursor});
        }
        const start = cursor ?? response.headers.get('last-event-id');
        if (!resumeFrom && start) this.sink.cursor(start);
        wasOpen = this.live = true;
        attempt = 0;
        this.sink.state('open');
        this.markOpen();
        const events = parser((event) => {
          if (this.stopped && abort.signal.aborted) return;
          if (event.type === GAP) {
            if (gapped) return;
            gapped = true;
            let detail = event.data;
            try { detail = JSON.parse(event.data); } catch { /* as text */ }
            this.sink.gap(detail);
          } else {
            this.sink.event(event);
          }
        }, (ms) => { this.retry = ms; });
        const reader = response.body.getReader();
        const decoder = new TextDecoder('utf-8', {ignoreBOM: true});
        for (;;) {
          const {done, value} = await reader.read();
          if (done) break;
          events.feed(decoder.decode(value, {stream: true}));
        }
      } catch {
        // A network error, an abort or a refused response: reconnect below.
      }
      this.live = false;
      if (this.stopped) return;
      this.sink.state('reconnecting');
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, backoff(this.retry, attempt++));
        this.wake = () => { clearTimeout(timer); resolve(undefined); };
      });
      this.wake = null;
    }
  }
}

/** The native EventSource (no headers, no topic), with the same sink. */
class NativeStream {
  /**
   * @param {() => string} url the URL to (re)open, with the last id seen
   * @param {SubscribeOptions} options
   * @param {Sink} sink
   */
  constructor(url, options, sink) {
    this.url = url;
    this.options = options;
    this.sink = sink;
    this.stopped = false;
    this.attempt = 0;
    /** @type {Set<string>} */
    this.types = new Set();
    this.open();
  }

  open() {
    const url = this.url();
    const source = (this.source = new EventSource(url, {withCredentials: !!this.options.withCredentials}));
    let wasOpen = false;
    this.sink.state('connecting');
    source.onopen = () => { wasOpen = true; this.attempt = 0; this.sink.state('open'); };
    source.onmessage = (event) => this.sink.event({type: 'message', data: event.data, id: event.lastEventId, topic: undefined});
    source.addEventListener(GAP, (event) => {
      const data = /** @type {MessageEvent} */ (event).data;
      try { this.sink.gap(JSON.parse(data)); } catch { this.sink.gap(data); }
    });
    for (const type of this.types) this.bind(source, type);
    source.onerror = async () => {
      if (this.stopped) return;
      if (source.readyState === EventSource.CONNECTING) {
        this.sink.state(wasOpen ? 'reconnecting' : 'connecting');
        return;
      }
      // Closed for good by the browser (an error status): find out why, then retry or stop.
      source.close();
      let refusal;
      const abort = new AbortController();
      try {
        const response = await fetch(url, {signal: abort.signal, credentials: this.options.withCredentials ? 'include' : 'same-origin'});
        if (response.status === 401 || response.status === 403) refusal = await problemDetail(response);
      } catch { /* unreachable: retry */ }
      abort.abort();
      if (this.stopped) return;
      if (refusal !== undefined) {
        this.stop();
        this.sink.state('closed', refusal);
        return;
      }
      this.sink.state('reconnecting');
      setTimeout(() => { if (!this.stopped) this.open(); }, backoff(1000, this.attempt++));
    };
  }

  /** Named events must be listened for by name on an EventSource. */
  listen(/** @type {string} */ type) {
    if (this.types.has(type) || ['message', 'state', 'gap', 'error'].includes(type)) return;
    this.types.add(type);
    if (this.source) this.bind(this.source, type);
  }

  bind(/** @type {EventSource} */ source, /** @type {string} */ type) {
    source.addEventListener(type, (event) => {
      const message = /** @type {MessageEvent} */ (event);
      this.sink.event({type, data: message.data, id: message.lastEventId, topic: undefined});
    });
  }

  stop() {
    this.stopped = true;
    this.source?.close();
  }
}

/**
 * One browser-wide connection for a hub and credentials: tabs elect a leader with Web Locks; the
 * leader holds the hub connection for the union of every tab's selectors and broadcasts each
 * event; every tab delivers the events its own subscriptions match.
 */
class Shared {
  /**
   * @param {string} name lock and channel name
   * @param {string} hub
   * @param {SubscribeOptions} options
   */
  constructor(name, hub, options) {
    this.name = name;
    this.hub = hub;
    this.options = options;
    this.me = Math.random().toString(36).slice(2);
    /** @type {Set<Subscription>} */
    this.subs = new Set();
    /** @type {Map<string, Selectors>} the tabs' selectors (leader only) */
    this.peers = new Map();
    /** @type {string|undefined} */
    this.lastId = undefined;
    /** @type {string[]} recent ids: an event seen twice (overlapping connections) is dropped */
    this.seen = [];
    this.state = 'connecting';
    /** @type {string|undefined} */
    this.detail = undefined;
    /** @type {FetchStream|null} */
    this.stream = null;
    this.union = '';
    /** @type {ReturnType<typeof setTimeout>|undefined} */
    this.timer = undefined;
    this.channel = new BroadcastChannel(name);
    this.channel.onmessage = (message) => this.receive(message.data);
    this.quit = new AbortController();
    this.ended = false;
    this.bye = () => this.post({t: 'sel', from: this.me, sel: null});
    globalThis.addEventListener?.('pagehide', this.bye);
    navigator.locks.request(name, {signal: this.quit.signal}, () => this.lead())
      .catch(() => { /* aborted while waiting */ });
  }

  /** Holds the lock until this tab has no subscription left. */
  lead() {
    if (this.ended) return undefined;
    this.leader = true;
    this.peers.set(this.me, this.selectors());
    this.post({t: 'who'});
    this.schedule(100);
    return new Promise((resolve) => { this.release = resolve; });
  }

  /** This tab's selectors: the union of its subscriptions'. */
  selectors() {
    /** @type {Selectors} */
    const all = {topics: [], match: [], matchUrlPattern: []};
    for (const sub of this.subs) {
      for (const key of /** @type {(keyof Selectors)[]} */ (['topics', 'match', 'matchUrlPattern'])) {
        for (const one of sub.selectors[key]) if (!all[key].includes(one)) all[key].push(one);
      }
    }
    return all;
  }

  /** The subscriptions of this tab changed: tell the leader (or be it). */
  changed() {
    if (this.leader) {
      this.peers.set(this.me, this.selectors());
      this.schedule(20);
    } else {
      this.post({t: 'sel', from: this.me, sel: this.selectors()});
    }
  }

  /** Recomputes the union a little later (tabs announce themselves in bursts). */
  schedule(/** @type {number} */ delay) {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.apply(), delay);
  }

  /**
   * Connects for the union; when it changed, opens the new connection (resuming after the last
   * event) before closing the old one, so no event is lost; duplicates are dropped by id.
   */
  apply() {
    if (!this.leader || this.state === 'closed') return;
    /** @type {Selectors} */
    const union = {topics: [], match: [], matchUrlPattern: []};
    for (const sel of this.peers.values()) {
      for (const key of /** @type {(keyof Selectors)[]} */ (['topics', 'match', 'matchUrlPattern'])) {
        for (const one of sel[key]) if (!union[key].includes(one)) union[key].push(one);
      }
    }
    for (const key of /** @type {(keyof Selectors)[]} */ (['topics', 'match', 'matchUrlPattern'])) union[key].sort();
    const text = JSON.stringify(union);
    if (text === this.union && this.stream) return;
    this.union = text;
    const old = this.stream;
    this.stream = null;
    if (!union.topics.length && !union.match.length && !union.matchUrlPattern.length) {
      old?.stop();
      return;
    }
    const stream = new FetchStream(streamUrl(this.hub, union, true), this.options, {
      event: (event) => { if (this.stream === stream || old) this.publish({t: 'ev', ev: event}); },
      // A replacement connection stays quiet about connecting: the old one is still open.
      state: (state, detail) => {
        if (this.stream !== stream || (state === 'connecting' && old)) return;
        // A new leader's first connection, after the old leader's: the tabs are reconnecting.
        if (state === 'connecting' && this.state !== 'connecting') state = 'reconnecting';
        this.publish({t: 'st', s: state, d: detail});
      },
      gap: (detail) => this.publish({t: 'gap', d: detail}),
      lastId: () => this.lastId,
      cursor: (id) => { if (this.lastId === undefined) this.lastId = id; },
    });
    this.stream = stream;
    // The old connection stays a moment longer, for events already on their way in it.
    if (old) stream.opened.then(() => setTimeout(() => old.stop(), 1000));
  }

  /** Leader: sends a message to the other tabs and handles it here. */
  publish(/** @type {any} */ message) {
    if (message.t === 'ev' && this.seenBefore(message.ev)) return;
    this.post(message);
    this.handle(message);
  }

  post(/** @type {any} */ message) {
    if (!this.ended) this.channel.postMessage(message);
  }

  /** Whether an event was delivered already (two connections overlap while the union changes). */
  seenBefore(/** @type {RawEvent} */ event) {
    return !!event.id && this.seen.includes(event.id);
  }

  /** A message from another tab. */
  receive(/** @type {any} */ message) {
    if (message.t === 'who') {
      this.post({t: 'sel', from: this.me, sel: this.selectors()});
    } else if (message.t === 'sel') {
      if (!this.leader) return;
      if (message.sel) this.peers.set(message.from, message.sel);
      else this.peers.delete(message.from);
      this.post({t: 'st', s: this.state, d: this.detail});
      this.schedule(20);
    } else if (!this.leader) {
      this.handle(message);
    }
  }

  /**
   * An event, state or gap of the shared connection, for this tab's subscriptions.
   * @param {any} message
   */
  handle(message) {
    if (message.t === 'ev') {
      const event = /** @type {RawEvent} */ (message.ev);
      if (this.seenBefore(event)) return;
      if (event.id) {
        this.seen.push(event.id);
        if (this.seen.length > 512) this.seen.shift();
        this.lastId = event.id;
      }
      for (const sub of this.subs) if (sub.matches(event.topic)) sub.deliver(event);
    } else if (message.t === 'st') {
      this.state = message.s;
      this.detail = message.d;
      for (const sub of this.subs) sub.setState(message.s, message.d);
      if (message.s === 'closed') this.end();
    } else if (message.t === 'gap') {
      for (const sub of this.subs) sub.gap(message.d);
    }
  }

  add(/** @type {Subscription} */ sub) {
    this.subs.add(sub);
    sub.setState(this.state, this.detail);
    this.changed();
  }

  remove(/** @type {Subscription} */ sub) {
    this.subs.delete(sub);
    if (this.subs.size) this.changed();
    else this.end();
  }

  /** No subscription left (or refused): leave the channel and hand the lock on. */
  end() {
    if (this.ended) return;
    if (shared.get(this.name) === this) shared.delete(this.name);
    clearTimeout(this.timer);
    this.stream?.stop();
    this.stream = null;
    if (!this.leader) this.bye();
    this.leader = false;
    this.quit.abort();
    this.release?.();
    globalThis.removeEventListener?.('pagehide', this.bye);
    this.ended = true;
    this.channel.close();
  }
}

/** @type {Map<string, Shared>} */
const shared = new Map();

/** A hash of the credentials, so they never appear in a lock or channel name. */
async function credentialsKey(/** @type {string} */ text) {
  const subtle = globalThis.crypto?.subtle;
  if (!subtle) return text;
  const digest = await subtle.digest('SHA-256', new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest), (byte) => byte.toString(16).padStart(2, '0')).join('');
}

/** A subscription to a hub: an EventTarget of `message`, named events, `gap`, `state`, `error`. */
export class Subscription extends EventTarget {
  /**
   * @param {string} url the hub's subscribe URL
   * @param {SubscribeOptions} [options]
   */
  constructor(url, options = {}) {
    super();
    this.url = url;
    this.options = options;
    /** @type {Selectors} */
    this.selectors = {
      topics: [...(options.topics || [])],
      match: [...(options.match || [])],
      matchUrlPattern: [...(options.matchUrlPattern || [])],
    };
    this.matches = selectorMatcher(this.selectors);
    /** @type {'connecting'|'open'|'reconnecting'|'closed'} */
    this.state = 'connecting';
    /** @type {string|undefined} why the hub refused the subscription (problem+json `detail`) */
    this.reason = undefined;
    this.closed = false;
    /** @type {string|undefined} */
    this.lastEventId = options.lastEventId;
    /** @type {FetchStream|NativeStream|null} */
    this.stream = null;
    /** @type {Shared|null} */
    this.shared = null;
    const headers = options.headers && Object.keys(options.headers).length ? options.headers : undefined;
    const canShare = options.shared !== false && options.lastEventId === undefined
      && typeof BroadcastChannel === 'function' && !!globalThis.navigator?.locks;
    if (options.shared === false && !headers && !options.token && typeof EventSource === 'function') {
      const at = () => streamUrl(url, this.selectors, false, this.lastEventId);
      this.stream = new NativeStream(at, options, this.sink());
    } else if (canShare) {
      this.join();
    } else {
      this.stream = new FetchStream(streamUrl(url, this.selectors, true), options, this.sink());
    }
  }

  /** Joins (or starts) this browser's shared connection for the hub and credentials. */
  async join() {
    const {token, headers, withCredentials} = this.options;
    const hub = new URL(this.url, globalThis.location?.href).href;
    const name = `herald:${await credentialsKey(JSON.stringify([hub, token || '', headers || {}, !!withCredentials]))}`;
    if (this.closed) return;
    let group = shared.get(name);
    if (!group) shared.set(name, (group = new Shared(name, hub, this.options)));
    this.shared = group;
    group.add(this);
  }

  /** @returns {Sink} */
  sink() {
    return {
      event: (event) => { this.lastEventId = event.id; this.deliver(event); },
      state: (state, detail) => this.setState(state, detail),
      gap: (detail) => this.gap(detail),
      lastId: () => this.lastEventId,
      cursor: (id) => { if (this.lastEventId === undefined) this.lastEventId = id; },
    };
  }

  /** @param {RawEvent} event */
  deliver(event) {
    if (this.closed) return;
    let data = event.data;
    if (this.options.json) {
      try {
        data = JSON.parse(event.data);
      } catch (error) {
        const failure = new ErrorEvent('error', {error, message: `event ${event.id} is not JSON`});
        Object.assign(failure, {data: event.data, lastEventId: event.id, topic: event.topic});
        this.dispatchEvent(failure);
        return;
      }
    }
    this.dispatchEvent(new HeraldEvent(event.type, {data, lastEventId: event.id}, event.topic));
  }

  /** @param {unknown} detail */
  gap(detail) {
    if (!this.closed) this.dispatchEvent(new CustomEvent('gap', {detail}));
  }

  /**
   * @param {string} state
   * @param {string} [detail] why it closed
   */
  setState(state, detail) {
    if (this.state === 'closed' || state === this.state) return;
    this.state = /** @type {any} */ (state);
    if (state === 'closed') this.closed = true;
    this.reason = detail;
    this.emitState(state === 'closed' && detail !== undefined ? detail : state);
    if (state === 'closed') this.release();
  }

  /** @type {EventTarget['addEventListener']} */
  addEventListener(type, listener, options) {
    super.addEventListener(type, listener, options);
    if (this.stream instanceof NativeStream) this.stream.listen(type);
  }

  release() {
    this.stream?.stop();
    this.shared?.remove(this);
    this.shared = null;
  }

  /** Closes the subscription for good. */
  close() {
    if (this.closed) return;
    this.closed = true;
    this.release();
    this.state = 'closed';
    this.emitState('closed');
  }

  /** A `state` event: `detail` is the state, or why the hub refused (problem+json `detail`). */
  emitState(/** @type {string} */ detail) {
    const event = new CustomEvent('state', {detail});
    Object.assign(event, {state: this.state});
    this.dispatchEvent(event);
  }
}

/**
 * Subscribes to a hub.
 * @param {string} url the hub's subscribe URL (`https://hub.example.com/.well-known/mercure`)
 * @param {SubscribeOptions} [options]
 * @returns {Subscription}
 */
export function subscribe(url, options) {
  return new Subscription(url, options);
}
