// The shared state in Redis (GATEWAY_REDIS_URL): atomic counters and turns, values, and notices by pub/sub, that never hold a request up when Redis is away.

import type { createClient } from 'redis';
import { NoticeListeners } from './notice-listeners.js';
import type { NoticeChannel, NoticeListener, SharedState } from './shared-state.js';

export interface RedisStateOptions {
  /** redis:// or rediss:// URL, user and password included when given there. */
  url: URL;
  /** The password when it is not in the URL (from redis_password_file). */
  password?: string;
  /** Put before every key and channel, so several deployments can share one Redis. */
  prefix: string;
  /** Hears each change between reachable (true) and not (false); the first call says how the first connection went. */
  onAvailability?(up: boolean, reason?: string): void;
  /** A command unanswered this long fails for its caller, who goes on without Redis. */
  commandTimeoutMs?: number;
  /** A connection attempt given up after this long. */
  connectTimeoutMs?: number;
  /** Most milliseconds between reconnection attempts. */
  maxReconnectDelayMs?: number;
}

/** Adds ARGV[1] to a counter, never below 0, and sets it to lapse ARGV[2] ms from now; its new value. */
const addCountScript = `
local value = redis.call('INCRBY', KEYS[1], ARGV[1])
if value < 0 then
  value = 0
  redis.call('SET', KEYS[1], '0')
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return value`;

/** A taken turn's remaining milliseconds, or 0 after taking it (holdMs 0: only looks). */
const takeTurnScript = `
local hold = tonumber(ARGV[1])
if hold > 0 and redis.call('SET', KEYS[1], '1', 'NX', 'PX', hold) then return 0 end
local left = redis.call('PTTL', KEYS[1])
if left > 0 then return left end
if hold > 0 then
  redis.call('SET', KEYS[1], '1', 'PX', hold)
end
return 0`;

/** Both connections, made (not yet connected) by the client library's createClient. */
function makeClients(create: typeof createClient, options: RedisStateOptions, timeoutMs: number) {
  const reconnectMax = options.maxReconnectDelayMs ?? 2_000;
  const url = new URL(options.url);
  // The password goes as an option, so that it reaches no error message the client makes from the URL.
  const password = options.password ?? (url.password === '' ? undefined : decodeURIComponent(url.password));
  url.password = '';
  const commands = create({
    url: url.href,
    ...(password === undefined ? {} : { password }),
    disableOfflineQueue: true,
    // Pings keep a sound connection busy, so one that stays silent for socketTimeout is closed and counts as away.
    pingInterval: 1_000,
    commandOptions: { timeout: timeoutMs },
    socket: {
      connectTimeout: options.connectTimeoutMs ?? 2_000,
      socketTimeout: 3_000,
      reconnectStrategy: (retries: number) => Math.min(reconnectMax, 100 * 2 ** Math.min(retries, 10)),
    },
  });
  return { commands, notices: commands.duplicate() };
}
type Clients = ReturnType<typeof makeClients>;
type RedisClient = Clients['commands'];

/** A Redis client's reply or failure, in one word for logs. */
function reasonOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** host:port/db of the URL, never its user or password. */
export function redisLocation(url: URL): string {
  return `${url.protocol}//${url.host}${url.pathname.length > 1 ? url.pathname : ''}`;
}

/**
 * Shared state in one Redis. Two connections: one for commands, one subscribed to the notice
 * channels. Commands are never queued while Redis is away (they fail at once) and time out after
 * `commandTimeoutMs`; both connections reconnect on their own, and a subscription is renewed when
 * its connection comes back. A connection that goes quiet is noticed by pings and closed.
 * The client library is loaded by start(), so a gateway without Redis never carries it.
 */
export class RedisSharedState implements SharedState {
  readonly kind = 'redis';
  readonly #options: RedisStateOptions;
  #clients: Clients | undefined;
  /** One listener's trouble is its own; the others still hear the notice. */
  readonly #listeners = new NoticeListeners();
  /** Channels subscribed, or being subscribed, on the notices connection. */
  readonly #subscribed = new Set<NoticeChannel>();
  readonly #timeoutMs: number;
  #up: boolean | undefined;
  #closed = false;

  constructor(options: RedisStateOptions) {
    this.#options = options;
    this.#timeoutMs = options.commandTimeoutMs ?? 500;
  }

  /** Both connections, made with the client library loaded now, and listened to. */
  async #makeClients(): Promise<Clients> {
    const { createClient } = await import('redis');
    const clients = makeClients(createClient, this.#options, this.#timeoutMs);
    for (const client of [clients.commands, clients.notices]) {
      client.on('ready', () => this.#check());
      client.on('error', (error: unknown) => this.#check(reasonOf(error)));
      client.on('end', () => this.#check('connection closed'));
    }
    clients.notices.on('ready', () => this.#subscribeAll());
    return clients;
  }

  /** The commands connection; throws (the caller goes on without Redis) before start() made it. */
  get #commands(): RedisClient {
    if (this.#clients === undefined) throw new Error('Redis is not connected yet');
    return this.#clients.commands;
  }

  /** Whether both connections are up now (undefined before the first attempt ended). */
  get up(): boolean | undefined {
    return this.#up;
  }

  /**
   * Starts connecting; resolves once both connections are up or `waitMs` has passed, whichever is
   * first. Never rejects: a Redis that is away is tried again in the background.
   */
  async start(waitMs: number): Promise<void> {
    let clients: Clients;
    try {
      clients = await this.#makeClients();
    } catch (error) {
      this.#up = false;
      this.#options.onAvailability?.(false, reasonOf(error));
      return;
    }
    if (this.#closed) return;
    this.#clients = clients;
    const connected = Promise.all([clients.commands.connect(), clients.notices.connect()]).then(
      () => undefined,
      () => undefined,
    );
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([connected, new Promise<void>((resolve) => (timer = setTimeout(resolve, waitMs)))]);
    clearTimeout(timer);
    if (this.#up === undefined) this.#check('no answer yet');
  }

  async addCount(key: string, windowMs: number, by = 1): Promise<number> {
    const name = this.#key(key);
    const count = await this.#timed(() => this.#commands.eval(addCountScript, { keys: [name], arguments: [String(by), String(Math.max(1, Math.round(windowMs)))] }));
    return Number(count);
  }

  async readCount(key: string): Promise<number> {
    const value = await this.#timed(() => this.#commands.get(this.#key(key)));
    const count = Number(value ?? 0);
    return Number.isSafeInteger(count) && count > 0 ? count : 0;
  }

  async clear(key: string): Promise<void> {
    await this.#timed(() => this.#commands.del([this.#key(key), this.#turnKey(key)]));
  }

  async takeTurn(key: string, holdMs: number): Promise<number> {
    const left = await this.#timed(() => this.#commands.eval(takeTurnScript, { keys: [this.#turnKey(key)], arguments: [String(Math.max(0, Math.round(holdMs)))] }));
    return Math.max(0, Number(left));
  }

  async holdTurn(key: string, ms: number): Promise<void> {
    const name = this.#turnKey(key);
    const hold = Math.round(ms);
    if (hold > 0) await this.#timed(() => this.#commands.set(name, '1', { expiration: { type: 'PX', value: hold } }));
    else await this.#timed(() => this.#commands.del(name));
  }

  async get(key: string): Promise<string | undefined> {
    return (await this.#timed(() => this.#commands.get(this.#key(key)))) ?? undefined;
  }

  async set(key: string, value: string | undefined): Promise<void> {
    if (value === undefined) await this.#timed(() => this.#commands.del(this.#key(key)));
    else await this.#timed(() => this.#commands.set(this.#key(key), value));
  }

  async publish(channel: NoticeChannel, message: string): Promise<void> {
    await this.#timed(() => this.#commands.publish(this.#channel(channel), message));
  }

  subscribe(channel: NoticeChannel, listener: NoticeListener): () => void {
    const remove = this.#listeners.add(channel, listener);
    this.#subscribeAll();
    return remove;
  }

  /**
   * Subscribes the channels that have listeners and no subscription yet, when the connection is up
   * (it is called again when it comes up). The client renews subscriptions it has after a reconnection.
   */
  #subscribeAll(): void {
    const notices = this.#clients?.notices;
    if (this.#closed || notices === undefined || !notices.isReady) return;
    for (const channel of this.#listeners.channels()) {
      if (this.#subscribed.has(channel)) continue;
      this.#subscribed.add(channel);
      notices
        .subscribe(this.#channel(channel), (message: string) => {
          this.#listeners.tell(channel, message);
        })
        .catch(() => this.#subscribed.delete(channel));
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const client of this.#clients === undefined ? [] : [this.#clients.commands, this.#clients.notices]) {
      if (client.isReady) await client.close().catch(() => client.destroy());
      else if (client.isOpen) client.destroy();
    }
  }

  /**
   * The command's answer, or a rejection once commandTimeoutMs has passed (the client's own timeout
   * ends at the write, and a Redis that stopped answering is noticed by socketTimeout only later);
   * at once while Redis is away.
   */
  #timed<T>(send: () => Promise<T>): Promise<T> {
    // Away: fail at once rather than wait on a connection that is being tried again.
    if (this.#up === false) return Promise.reject(new Error('Redis does not answer'));
    let command: Promise<T>;
    try {
      command = send();
    } catch (error) {
      return Promise.reject(error as Error);
    }
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`Redis did not answer within ${this.#timeoutMs} ms`)), this.#timeoutMs);
    });
    // The command's own later failure has nobody waiting for it.
    command.catch(() => undefined);
    return Promise.race([command, late]).finally(() => clearTimeout(timer));
  }

  #key(key: string): string {
    return `${this.#options.prefix}${key}`;
  }

  #turnKey(key: string): string {
    return `${this.#options.prefix}turn:${key}`;
  }

  #channel(channel: NoticeChannel): string {
    return `${this.#options.prefix}notice:${channel}`;
  }

  /** Tells a change of availability once: up only when both connections are. */
  #check(reason?: string): void {
    if (this.#closed) return;
    const up = this.#clients !== undefined && this.#clients.commands.isReady && this.#clients.notices.isReady;
    if (up === this.#up || (!up && reason === undefined)) return;
    this.#up = up;
    this.#options.onAvailability?.(up, up ? undefined : reason);
  }
}
