/**
 * One app node's way to Redis in the chaos run (`app-redis-cut`): a TCP relay per Sentinel and data node,
 * given to the node as REDIS_SENTINELS / REDIS_NAT_MAP. A cut is silent, as a partition: nothing passes
 * either way; healing destroys what lived through it and the node reconnects.
 */
import net from 'node:net';
import { STACK_HOST, STACK_PORTS, STACK_REDIS_NODES } from '../stack/layout.js';

export interface Address {
  readonly host: string;
  readonly port: number;
}

const key = (a: Address): string => `${a.host}:${a.port}`;

interface Relay {
  readonly target: Address;
  readonly server: net.Server;
  readonly port: number;
}

export class RedisPath {
  private readonly pairs = new Set<readonly [net.Socket, net.Socket | undefined]>();
  private isCut = false;
  /** Connections opened or stalled during the current cut: destroyed when it heals. */
  private readonly stalled = new Set<net.Socket>();

  private constructor(
    private readonly sentinels: readonly Relay[],
    private readonly dataNodes: readonly Relay[],
  ) {}

  /** Opens a relay on a free loopback port for each Sentinel and each data node. */
  static async open(sentinels: readonly Address[], dataNodes: readonly Address[]): Promise<RedisPath> {
    const relays: Relay[] = [];
    let path: RedisPath | undefined;
    const listen = async (target: Address): Promise<Relay> => {
      const server = net.createServer((client) => path?.accept(client, target));
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(0, '127.0.0.1', () => resolve());
      });
      const relay = { target, server, port: (server.address() as net.AddressInfo).port };
      relays.push(relay);
      return relay;
    };
    try {
      const s = await Promise.all(sentinels.map(listen));
      const d = await Promise.all(dataNodes.map(listen));
      path = new RedisPath(s, d);
      return path;
    } catch (err) {
      for (const relay of relays) relay.server.close();
      throw err;
    }
  }

  /** Relays to the local stack's three Sentinels and two Redis data nodes. */
  static toStack(): Promise<RedisPath> {
    return RedisPath.open(
      STACK_PORTS.sentinels.map((port) => ({ host: STACK_HOST, port })),
      STACK_REDIS_NODES.map(({ port }) => ({ host: STACK_HOST, port })),
    );
  }

  /** One path to the stack for each of `n` app nodes, closed at cleanup. */
  static async forNodes(n: number, life: { onCleanup(fn: () => Promise<void>): void }): Promise<RedisPath[]> {
    const paths: RedisPath[] = [];
    life.onCleanup(async () => void (await Promise.all(paths.map((p) => p.close()))));
    for (let i = 0; i < n; i += 1) paths.push(await RedisPath.toStack());
    return paths;
  }

  /** The node's settings: Sentinels through the relays, and every reported address mapped to its relay. */
  env(): Record<string, string> {
    const at = (r: Relay): string => `127.0.0.1:${r.port}`;
    return {
      REDIS_SENTINELS: this.sentinels.map(at).join(','),
      REDIS_NAT_MAP: [...this.sentinels, ...this.dataNodes].map((r) => `${key(r.target)}=${at(r)}`).join(','),
    };
  }

  get cut(): boolean {
    return this.isCut;
  }

  /** From now on nothing passes, in either direction, on open connections or new ones. */
  cutOff(): void {
    this.isCut = true;
    for (const [client, upstream] of this.pairs) {
      if (upstream !== undefined) {
        client.unpipe(upstream);
        upstream.unpipe(client);
        upstream.pause();
      }
      client.pause();
      this.stalled.add(client);
    }
  }

  /** Ends the cut: what lived through it is destroyed (the node reconnects), new connections pass again. */
  heal(): void {
    this.isCut = false;
    for (const client of this.stalled) client.destroy();
    this.stalled.clear();
  }

  async close(): Promise<void> {
    for (const [client, upstream] of this.pairs) {
      client.destroy();
      upstream?.destroy();
    }
    this.pairs.clear();
    await Promise.all(
      [...this.sentinels, ...this.dataNodes].map(
        (r) => new Promise<void>((resolve) => r.server.close(() => resolve())),
      ),
    );
  }

  private accept(client: net.Socket, target: Address): void {
    client.on('error', () => undefined);
    if (this.isCut) {
      // Accepted and never answered: the node's connect succeeds, its TLS handshake waits in vain.
      client.pause();
      this.stalled.add(client);
      const pair = [client, undefined] as const;
      this.pairs.add(pair);
      client.once('close', () => {
        this.pairs.delete(pair);
        this.stalled.delete(client);
      });
      return;
    }
    const upstream = net.connect(target.port, target.host);
    const pair = [client, upstream] as const;
    this.pairs.add(pair);
    upstream.on('error', () => undefined);
    client.pipe(upstream);
    upstream.pipe(client);
    const end = (): void => {
      this.pairs.delete(pair);
      this.stalled.delete(client);
      client.destroy();
      upstream.destroy();
    };
    client.once('close', end);
    upstream.once('close', end);
  }
}
