// Redis with Sentinel, as in production (docker-compose.yml): two data nodes started from
// docker/redis/redis.conf (TLS only, `port 0`) with the local TLS port, certificate, paths, loopback bind and
// ACL users on the command line (the app's user `flashsale`, the stack's `stack-admin` for Sentinel and
// replication, `default` disabled), and three Sentinels (quorum 2) that monitor them and promote the replica
// when the primary dies. The app finds the primary through the Sentinels (REDIS_SENTINELS).
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import {
  DOCKER_DIR,
  RUN_DIR,
  STACK_HOST,
  STACK_PORTS,
  STACK_REDIS,
  STACK_REDIS_NODES,
  STACK_TLS,
  serverPaths,
  type ServerName,
} from './layout.js';
import { waitUntil } from './process.js';
import { argumentsChanged, type ServerSpec } from './server.js';
import { ensureTls, olderThanCertificate } from './tls.js';

const SOURCE_CONFIG = path.join(DOCKER_DIR, 'redis', 'redis.conf');

/**
 * ACL of the app's user: every key and channel, every command but the administrative ones (CONFIG,
 * SHUTDOWN, DEBUG, REPLICAOF, ACL, MONITOR, ...) and the ones that wipe a database.
 */
export const REDIS_APP_ACL = ['~*', '&*', '+@all', '-@admin', '-flushall', '-flushdb', '-swapdb'] as const;

export interface RedisCommandOptions {
  readonly timeoutMs?: number;
  /** `[user, password]` sent with AUTH first; default the app's user. `null`: no AUTH. */
  readonly auth?: readonly [string, string] | null;
  /** Plain TCP instead of TLS (to show that the server refuses it). */
  readonly plaintext?: boolean;
}

/** RESP for one command. */
function encode(args: readonly string[]): string {
  return `*${args.length}\r\n${args.map((arg) => `$${Buffer.byteLength(arg)}\r\n${arg}\r\n`).join('')}`;
}

/** A reply as text: simple, integer and bulk replies as their text (nil as ''), arrays as arrays. */
export type RedisReply = string | RedisReply[];

/** One reply at `offset` of `buffer` (simple, error, integer, bulk or array), or undefined if incomplete. */
function parseReply(buffer: Buffer, offset = 0): { reply: RedisReply | Error; end: number } | undefined {
  const lineEnd = buffer.indexOf('\r\n', offset);
  if (lineEnd < 0) return undefined;
  const type = String.fromCharCode(buffer[offset] ?? 0);
  const line = buffer.subarray(offset + 1, lineEnd).toString();
  if (type === '-') return { reply: new Error(line), end: lineEnd + 2 };
  if (type === '*') {
    const items: RedisReply[] = [];
    let end = lineEnd + 2;
    for (let i = 0; i < Number(line); i++) {
      const item = parseReply(buffer, end);
      if (item === undefined) return undefined;
      if (item.reply instanceof Error) return item;
      items.push(item.reply);
      end = item.end;
    }
    return { reply: items, end };
  }
  if (type !== '$') return { reply: line, end: lineEnd + 2 };
  const size = Number(line);
  if (size < 0) return { reply: '', end: lineEnd + 2 };
  if (buffer.length < lineEnd + 2 + size + 2) return undefined;
  return {
    reply: buffer.subarray(lineEnd + 2, lineEnd + 2 + size).toString(),
    end: lineEnd + 2 + size + 2,
  };
}

/**
 * Sends one command over TLS (verifying the server against the stack's CA), after AUTH as the app's user,
 * and returns its reply as text; an error reply, an array reply, or a failed AUTH, rejects.
 */
export async function redisCommand(
  port: number,
  args: readonly string[],
  options: RedisCommandOptions = {},
): Promise<string> {
  const reply = await redisQuery(port, args, options);
  if (typeof reply !== 'string') throw new Error(`redis on ${port}: ${args[0]} answered an array`);
  return reply;
}

/** redisCommand for any reply, arrays included (ROLE, SENTINEL …). */
export function redisQuery(
  port: number,
  args: readonly string[],
  options: RedisCommandOptions = {},
): Promise<RedisReply> {
  const timeoutMs = options.timeoutMs ?? 2000;
  const auth =
    options.auth === undefined ? ([STACK_REDIS.user, STACK_REDIS.password] as const) : options.auth;
  const commands = [...(auth === null ? [] : [['AUTH', ...auth]]), args];
  return new Promise((resolve, reject) => {
    const socket = options.plaintext
      ? net.connect({ host: STACK_HOST, port })
      : tls.connect({ host: STACK_HOST, port, ca: fs.readFileSync(STACK_TLS.ca) });
    let buffer = Buffer.alloc(0);
    const replies: (RedisReply | Error)[] = [];
    let settled = false;
    const finish = (error: Error | null, reply?: RedisReply): void => {
      if (settled) return;
      settled = true;
      socket.setTimeout(0);
      // end(), not destroy(): a TLS close_notify, so the server does not log an unexpected EOF.
      if (error === null) socket.end();
      else socket.destroy();
      if (error !== null) reject(error);
      else resolve(reply ?? '');
    };
    socket.setTimeout(timeoutMs, () =>
      finish(new Error(`redis on ${port}: no reply within ${timeoutMs} ms`)),
    );
    socket.once('error', (error: Error) => finish(error));
    socket.once(options.plaintext ? 'connect' : 'secureConnect', () => {
      socket.write(commands.map(encode).join(''));
    });
    socket.once('end', () =>
      finish(new Error(`redis on ${port}: connection closed after ${replies.length} replies`)),
    );
    socket.on('data', (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      for (let parsed = parseReply(buffer); parsed !== undefined; parsed = parseReply(buffer)) {
        replies.push(parsed.reply);
        buffer = buffer.subarray(parsed.end);
        // A failed AUTH ends it: its error is the answer.
        if (parsed.reply instanceof Error) return finish(parsed.reply);
        if (replies.length === commands.length) return finish(null, parsed.reply);
      }
    });
  });
}

function infoField(info: string, field: string): string | undefined {
  return new RegExp(`^${field}:(.*)$`, 'm').exec(info)?.[1]?.trim();
}

/** True for a redis-server process started from `configFile` (its first argument). */
const startedFrom = (argv: readonly string[], configFile: string): boolean =>
  argv[0]?.split('/').pop() === 'redis-server' && argv[1] === configFile;

/** The stack's administrative login (Sentinel's and replication's), for commands the app's user may not run. */
export const REDIS_ADMIN_AUTH = [STACK_REDIS.adminUser, STACK_REDIS.adminPassword] as const;

const sentinelConfigFile = (name: ServerName): string =>
  path.join(serverPaths(name).dataDir, 'sentinel.conf');
const SENTINELS = STACK_PORTS.sentinels.map((port, i) => ({ name: `sentinel-${i + 1}` as ServerName, port }));

/** What the Sentinel on `port` says the primary is: `[host, port]`, or another reply. */
function askSentinel(port: number, timeoutMs?: number): Promise<RedisReply> {
  return redisQuery(port, ['SENTINEL', 'GET-MASTER-ADDR-BY-NAME', STACK_REDIS.masterName], {
    auth: null,
    ...(timeoutMs === undefined ? {} : { timeoutMs }),
  });
}

/**
 * The port of the Redis primary: what a live Sentinel says; else what the Sentinels last wrote down (a
 * failover rewrites their `sentinel monitor` line, so a stack started again keeps the promoted node as the
 * primary); else the first data node (a new stack).
 */
export async function redisPrimaryPort(): Promise<number> {
  for (const { port } of SENTINELS) {
    const reply = await askSentinel(port, 500).catch(() => undefined);
    if (Array.isArray(reply) && typeof reply[1] === 'string') return Number(reply[1]);
  }
  const monitor = new RegExp(`^sentinel monitor ${STACK_REDIS.masterName} \\S+ (\\d+) `, 'm');
  for (const { name } of SENTINELS) {
    const written = fs.existsSync(sentinelConfigFile(name))
      ? monitor.exec(fs.readFileSync(sentinelConfigFile(name), 'utf8'))
      : null;
    if (written?.[1] !== undefined) return Number(written[1]);
  }
  return STACK_PORTS.redis;
}

/** The value of `name` in a reply of name/value pairs (SENTINEL MASTER, an entry of SENTINEL REPLICAS). */
export function replyField(reply: RedisReply, name: string): string | undefined {
  if (Array.isArray(reply))
    for (let i = 0; i + 1 < reply.length; i += 2) if (reply[i] === name) return String(reply[i + 1]);
  return undefined;
}

/**
 * Why the Sentinels could not promote the replica at once if the primary died now, or undefined when they
 * could: each of them must see the data node that is not the primary as a replica (flags `slave` alone) whose
 * link to the primary is up. Right after a restart a replica shows a link in error for seconds while it syncs.
 * (In CI a primary killed 11 s after its replica's restart met `-failover-abort-no-good-slave`, and the
 * Sentinels' next try came 10 s later; why they found the replica not good then is not known.)
 */
export async function sentinelsNotReadyToPromote(): Promise<string | undefined> {
  const primary = String(await redisPrimaryPort());
  for (const { name, port } of SENTINELS) {
    const reply = await redisQuery(port, ['SENTINEL', 'REPLICAS', STACK_REDIS.masterName], {
      auth: null,
      timeoutMs: 1_000,
    }).catch((err: Error) => err);
    if (reply instanceof Error) return `${name}: ${reply.message}`;
    const replica = (Array.isArray(reply) ? reply : []).find((r) => replyField(r, 'port') !== primary);
    if (replica === undefined) return `${name}: knows no replica of the primary on ${primary}`;
    const [flags, link] = [replyField(replica, 'flags'), replyField(replica, 'master-link-status')];
    if (flags !== 'slave' || link !== 'ok')
      return `${name}: the replica on ${replyField(replica, 'port')} is ${flags}, link ${link}`;
  }
  return undefined;
}

/** `master` or `slave` (ROLE's first field). */
export async function redisRole(port: number): Promise<string> {
  const reply = await redisQuery(port, ['ROLE'], { auth: REDIS_ADMIN_AUTH });
  return Array.isArray(reply) && typeof reply[0] === 'string' ? reply[0] : 'unknown';
}

/**
 * A replica waits this long for its primary to answer before it starts, when both start together, ms: the
 * primary must be back first. A replica back first while the Sentinels see the primary down is a
 * candidate for their failover, and the primary, back a moment later, is demoted: two switches, each of
 * which closes every client's connection. If the primary does not come, the replica starts anyway and the
 * Sentinels decide.
 */
const PRIMARY_START_WAIT_MS = 10_000;

/**
 * One Redis data node, started from redis.conf: the primary the Sentinels name (or, on a new stack, the
 * first node) as a primary, the other as its replica (`replicaof` in the copy written at each start). The
 * two start together; the replica waits for its primary to answer first. `configure` makes a running node
 * that still acts as a primary, although the Sentinels name another, its replica (the Sentinels do the
 * same after a failover, and to an old primary that comes back).
 */
function dataNode(name: 'redis' | 'redis-2', port: number): ServerSpec {
  const paths = serverPaths(name);
  // CONFIG REWRITE (run by Sentinel on a failover) rewrites the file a server started from: it must be
  // this copy, never the one in docker/. It is written afresh at each start, with the node's role (`prepare`).
  const configCopy = path.join(paths.dataDir, 'redis.conf');
  const spec: ServerSpec = {
    name,
    ...paths,
    port,
    ports: [port],
    dependsOn: [],
    startTimeoutMs: 30_000,
    stopTimeoutMs: 30_000,
    executable: 'redis-server',
    // By its config file, not by a path containing the data folder: `.stack/redis` is a prefix of `.stack/redis-2`.
    owns: (argv) => startedFrom(argv, configCopy),
    prepare: async () => {
      await ensureTls();
      fs.mkdirSync(paths.dataDir, { recursive: true });
      let primary = await redisPrimaryPort();
      const primaryAnswers = async () =>
        (await redisCommand(primary, ['PING'], { timeoutMs: 500 })) === 'PONG';
      if (primary !== port) {
        const what = `${name}: its primary on ${primary}`;
        const answered = await waitUntil(primaryAnswers, {
          what,
          timeoutMs: PRIMARY_START_WAIT_MS,
          intervalMs: 100,
        }).then(
          () => true,
          () => false,
        );
        if (!answered) primary = await redisPrimaryPort(); // the Sentinels may have promoted another node meanwhile
      }
      // A node that is not the primary starts as its replica, never as a second primary for a moment.
      const role =
        primary === port
          ? ''
          : `\n# Set at this start by scripts/stack/redis.ts: the primary the Sentinels named.\nreplicaof ${STACK_HOST} ${primary}\n`;
      fs.writeFileSync(configCopy, fs.readFileSync(SOURCE_CONFIG, 'utf8') + role);
    },
    stale: async (pid, argv) => {
      await ensureTls();
      return argumentsChanged(spec, argv) ?? olderThanCertificate(pid);
    },
    command: () => ({
      file: 'redis-server',
      args: [
        configCopy,
        // TLS only: no plaintext port; clients authenticate with a password (no client certificates).
        ...['--port', '0', '--tls-port', String(port), '--bind', STACK_HOST],
        ...[
          '--tls-cert-file',
          STACK_TLS.cert,
          '--tls-key-file',
          STACK_TLS.key,
          '--tls-ca-cert-file',
          STACK_TLS.ca,
        ],
        // Nobody can log in as `default` (off), but it keeps every permission: Redis 7.0 replays the AOF as
        // that user and re-checks each EXEC's commands against it, so a default user without permissions
        // silently drops every transaction and script write of the AOF at a restart (redis/redis#14541,
        // fixed in 8.x). Connections still start unauthenticated and must AUTH as one of the users below.
        ...['--user', 'default', 'off', '~*', '&*', '+@all'],
        ...['--user', STACK_REDIS.user, 'on', `>${STACK_REDIS.password}`, ...REDIS_APP_ACL],
        ...['--user', STACK_REDIS.adminUser, 'on', `>${STACK_REDIS.adminPassword}`, '~*', '&*', '+@all'],
        // As a replica (now or after a failover), it logs in to its primary as the admin user.
        ...['--masteruser', STACK_REDIS.adminUser, '--masterauth', STACK_REDIS.adminPassword],
        ...['--replica-announce-ip', STACK_HOST],
        ...[
          '--dir',
          paths.dataDir,
          '--pidfile',
          path.join(RUN_DIR, `${name}.server.pid`),
          '--logfile',
          paths.logFile,
        ],
        // Keeps the full command line (with the .stack paths) visible to ps/pgrep and to runningPid().
        ...['--set-proc-title', 'no'],
      ],
    }),
    probe: async () => (await redisCommand(port, ['PING'])) === 'PONG',
    configure: async () => {
      const primary = await redisPrimaryPort();
      if (primary !== port && (await redisRole(port)) === 'master')
        await redisCommand(port, ['REPLICAOF', STACK_HOST, String(primary)], { auth: REDIS_ADMIN_AUTH });
    },
    details: async () => {
      const info = await redisCommand(port, ['INFO', 'server']);
      const persistence = await redisCommand(port, ['INFO', 'persistence']);
      return {
        version: infoField(info, 'redis_version'),
        role: await redisRole(port),
        aof: infoField(persistence, 'aof_enabled') === '1',
      };
    },
  };
  return spec;
}

const [firstNode, secondNode] = STACK_REDIS_NODES as readonly [
  (typeof STACK_REDIS_NODES)[number],
  (typeof STACK_REDIS_NODES)[number],
];
export const redis = dataNode('redis', firstNode.port);
export const redis2 = dataNode('redis-2', secondNode.port);

/**
 * How the Sentinels watch the primary. A primary silent for 1 s is subjectively down; 2 Sentinels agreeing
 * make it objectively down, and a majority (2 of 3) elects the one that promotes the replica: a failover in
 * about 2 s, within the specification's 5 s. (Production, docker-compose.yml: 3 s, on a real network.) A
 * Sentinel does not fail the same primary over again within twice the failover timeout: 10 s here, so
 * that fault-injection runs can kill the new primary soon after.
 */
const SENTINEL_QUORUM = 2;
const SENTINEL_DOWN_AFTER_MS = 1_000;
const SENTINEL_FAILOVER_TIMEOUT_MS = 5_000;

/**
 * One Sentinel. Its config file holds its state (its id, the epochs, the primary it follows, the replicas
 * and Sentinels it found) and is rewritten by it, so it is written once, on the first start, pointing at
 * the primary of that moment; ports, TLS and paths are on the command line.
 */
function sentinel(name: ServerName, port: number): ServerSpec {
  const paths = serverPaths(name);
  const configFile = sentinelConfigFile(name);
  const spec: ServerSpec = {
    name,
    ...paths,
    port,
    ports: [port],
    dependsOn: ['redis', 'redis-2'],
    startTimeoutMs: 30_000,
    stopTimeoutMs: 10_000,
    executable: 'redis-server',
    owns: (argv) => startedFrom(argv, configFile),
    prepare: async () => {
      await ensureTls();
      fs.mkdirSync(paths.dataDir, { recursive: true });
      if (fs.existsSync(configFile)) return;
      const master = STACK_REDIS.masterName;
      const lines = [
        '# Written once by scripts/stack/redis.ts; from then on Sentinel keeps its state here.',
        `sentinel monitor ${master} ${STACK_HOST} ${await redisPrimaryPort()} ${SENTINEL_QUORUM}`,
        `sentinel auth-user ${master} ${STACK_REDIS.adminUser}`,
        `sentinel auth-pass ${master} ${STACK_REDIS.adminPassword}`,
        `sentinel parallel-syncs ${master} 1`,
      ];
      fs.writeFileSync(configFile, `${lines.join('\n')}\n`);
    },
    stale: async (pid, argv) => {
      await ensureTls();
      return argumentsChanged(spec, argv) ?? olderThanCertificate(pid);
    },
    command: () => ({
      file: 'redis-server',
      args: [
        configFile,
        '--sentinel',
        // TLS to its clients (no password: it answers where the primary is) and to the data nodes.
        ...['--port', '0', '--tls-port', String(port), '--bind', STACK_HOST],
        ...['--tls-replication', 'yes', '--tls-auth-clients', 'no'],
        ...[
          '--tls-cert-file',
          STACK_TLS.cert,
          '--tls-key-file',
          STACK_TLS.key,
          '--tls-ca-cert-file',
          STACK_TLS.ca,
        ],
        ...[
          '--dir',
          paths.dataDir,
          '--pidfile',
          path.join(RUN_DIR, `${name}.server.pid`),
          '--logfile',
          paths.logFile,
        ],
        ...['--set-proc-title', 'no'],
      ],
    }),
    // The timings are set at every start: the file keeps them too, but from whichever version wrote it.
    configure: async () => {
      await redisCommand(
        port,
        [
          'SENTINEL',
          'SET',
          STACK_REDIS.masterName,
          'down-after-milliseconds',
          String(SENTINEL_DOWN_AFTER_MS),
          'failover-timeout',
          String(SENTINEL_FAILOVER_TIMEOUT_MS),
        ],
        { auth: null },
      );
    },
    probe: async () => {
      const reply = await askSentinel(port);
      return Array.isArray(reply) && reply.length === 2;
    },
    details: async () => {
      const primary = await askSentinel(port);
      const quorum = await redisCommand(port, ['SENTINEL', 'CKQUORUM', STACK_REDIS.masterName], {
        auth: null,
      }).catch((error: Error) => error.message);
      return { primary: Array.isArray(primary) ? primary.join(':') : primary, quorum };
    },
  };
  return spec;
}

export const sentinels: readonly ServerSpec[] = SENTINELS.map(({ name, port }) => sentinel(name, port));
