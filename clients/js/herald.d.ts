// Types of herald.js, the browser client of a Herald (Mercure) hub. Served at GET /herald.d.ts.

/** Options of {@link subscribe}. */
export interface SubscribeOptions {
  /** 0.x selectors: exact topics, `*` or RFC 6570 URI templates (`topic=`). */
  topics?: string[];
  /** 1.0 selectors (`match=`). */
  match?: string[];
  /** 1.0 URL patterns (`match_urlpattern=`). */
  matchUrlPattern?: string[];
  /** Sent as `Authorization: Bearer <token>`; never put into a URL. */
  token?: string;
  /** Extra request headers (the hub's CORS preflight allows what an allowed origin asks for). */
  headers?: Record<string, string>;
  /** Send cookies (deployments that keep the token in the `mercureAuthorization` cookie). */
  withCredentials?: boolean;
  /** Where to start: an event id, or `earliest` for everything history holds. A subscription
   * with a starting point has a connection of its own. */
  lastEventId?: string;
  /** Parse `event.data` as JSON; a parse failure is an `error` event, never a dropped connection. */
  json?: boolean;
  /** One hub connection per browser for the same hub and credentials (default `true`). */
  shared?: boolean;
}

/** Connection states, in `state` events and {@link Subscription.state}. */
export type State = 'connecting' | 'open' | 'reconnecting' | 'closed';

/** A `message` or named event (`type` on publish). */
export declare class HeraldEvent<T = any> extends MessageEvent<T> {
  constructor(type: string, init: MessageEventInit<T>, topic: string | undefined);
  /** The update's canonical topic (undefined with the native EventSource transport). */
  readonly topic: string | undefined;
}

/** `detail` of a `gap` event: the id resumed from and the oldest id history still holds. */
export interface GapDetail {
  lastEventID: string;
  oldestEventID: string | null;
}

/** `state` event: `detail` is the new state; when the hub refused the subscription (401/403)
 * the state is `closed` and `detail` is the problem's `detail`. */
export interface StateEvent extends CustomEvent<State | string> {
  readonly state: State;
}

/** `error` event: a payload that is not JSON with `json: true`. */
export interface JsonErrorEvent extends ErrorEvent {
  readonly data: string;
  readonly lastEventId: string;
  readonly topic: string | undefined;
}

export interface SubscriptionEventMap {
  message: HeraldEvent;
  gap: CustomEvent<GapDetail | string>;
  state: StateEvent;
  error: JsonErrorEvent;
  [name: string]: Event;
}

/** A subscription: an EventTarget of `message`, named events, `gap`, `state` and `error`. */
export declare class Subscription extends EventTarget {
  constructor(url: string, options?: SubscribeOptions);
  readonly url: string;
  /** The current state. */
  readonly state: State;
  /** Why the hub refused the subscription, once `closed` by a 401/403. */
  readonly reason: string | undefined;
  addEventListener<K extends keyof SubscriptionEventMap>(
    type: K,
    listener: (this: Subscription, event: SubscriptionEventMap[K]) => any,
    options?: boolean | AddEventListenerOptions,
  ): void;
  addEventListener(type: string, listener: EventListenerOrEventListenerObject | null,
    options?: boolean | AddEventListenerOptions): void;
  /** Closes the subscription for good. */
  close(): void;
}

/** Subscribes to a hub (`https://hub.example.com/.well-known/mercure`). */
export declare function subscribe(url: string, options?: SubscribeOptions): Subscription;

/** A raw event of the stream parser. */
export interface RawEvent {
  type: string;
  data: string;
  id: string;
  topic: string | undefined;
}

/** The incremental `text/event-stream` parser (WHATWG rules) used by the fetch transport. */
export declare function parser(
  onEvent: (event: RawEvent) => void,
  onRetry?: (ms: number) => void,
): { feed(text: string): void; lastId(): string };

/** A matcher of one 0.x selector (`*`, an exact topic, or a URI template). */
export declare function topicMatcher(selector: string): (topic: string) => boolean;
