/**
 * A fixed set of keep-alive HTTP/1.1 connections in rotation: each request takes the one idle longest, so all
 * stay open and carry traffic as distinct clients would (undici's Pool would leave most idle).
 */
import { Client, type Dispatcher } from 'undici';

export class ConnectionSet {
  private readonly clients: Client[];
  /** Idle connections, the one idle longest first; requests waiting for one, the oldest first. */
  private readonly idle: Client[];
  private readonly waiting: ((client: Client) => void)[] = [];
  /** Sockets open now (undici `connect` minus `disconnect` events). */
  connected = 0;
  /** Most requests waiting for a free connection at once. */
  maxWaiting = 0;

  constructor(
    readonly origin: string,
    readonly size: number,
    /** Longest wait for response headers and between body chunks, ms. */
    options: { readonly timeoutMs?: number } = {},
  ) {
    const timeout = options.timeoutMs ?? 30_000;
    this.clients = Array.from({ length: size }, () => {
      const client = new Client(origin, {
        pipelining: 1,
        headersTimeout: timeout,
        bodyTimeout: timeout,
        keepAliveTimeout: 120_000, // 2 min: used every size/rate seconds, they must outlive the gap
        keepAliveMaxTimeout: 120_000,
        connect: { timeout: 10_000 },
      });
      client.on('connect', () => (this.connected += 1));
      client.on('disconnect', () => (this.connected -= 1));
      return client;
    });
    this.idle = [...this.clients];
  }

  /** Opens every connection (a GET on each, `concurrency` at a time); returns the sockets open after. */
  async open(path: string, concurrency = 500): Promise<number> {
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < this.clients.length) {
        const client = this.clients[next++]!;
        await client
          .request({ path, method: 'GET' })
          .then((res) => res.body.dump())
          .catch(() => undefined); // counted by `connected` below
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, this.size) }, worker));
    return this.connected;
  }

  /** One request on the connection idle longest; `read` consumes the body before the connection is reused. */
  async send<T>(
    options: Omit<Dispatcher.RequestOptions, 'origin'>,
    read: (res: Dispatcher.ResponseData) => Promise<T>,
  ): Promise<T> {
    const client =
      this.idle.shift() ??
      (await new Promise<Client>((resolve) => {
        this.waiting.push(resolve);
        this.maxWaiting = Math.max(this.maxWaiting, this.waiting.length);
      }));
    try {
      return await read(await client.request(options));
    } finally {
      const waiter = this.waiting.shift();
      if (waiter === undefined) this.idle.push(client);
      else waiter(client);
    }
  }

  async close(): Promise<void> {
    await Promise.all(this.clients.map((c) => c.destroy().catch(() => undefined)));
  }
}
