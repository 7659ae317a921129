// Redis: started from docker/redis/redis.conf (TLS only, `port 0`) with the local TLS port, certificate,
// paths, loopback bind and ACL users on the command line: the app's user `flashsale`, `default` disabled.
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
  STACK_TLS,
  serverPaths,
} from './layout.js';
import { argumentsChanged, type ServerSpec } from './server.js';
import { ensureTls, olderThanCertificate } from './tls.js';

const paths = serverPaths('redis');
const SOURCE_CONFIG = path.join(DOCKER_DIR, 'redis', 'redis.conf');
// CONFIG REWRITE rewrites the file a server started from: it must be this copy, never the one in docker/.
const CONFIG_COPY = path.join(paths.dataDir, 'redis.conf');

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

/** One reply at the start of `buffer` (simple, error, integer or bulk; enough for AUTH, PING and INFO). */
function parseReply(buffer: Buffer): { reply: string | Error; length: number } | undefined {
  const lineEnd = buffer.indexOf('\r\n');
  if (lineEnd < 0) return undefined;
  const type = String.fromCharCode(buffer[0] ?? 0);
  const line = buffer.subarray(1, lineEnd).toString();
  if (type === '-') return { reply: new Error(line), length: lineEnd + 2 };
  if (type !== '$') return { reply: line, length: lineEnd + 2 };
  const size = Number(line);
  if (size < 0) return { reply: '', length: lineEnd + 2 };
  if (buffer.length < lineEnd + 2 + size + 2) return undefined;
  return {
    reply: buffer.subarray(lineEnd + 2, lineEnd + 2 + size).toString(),
    length: lineEnd + 2 + size + 2,
  };
}

/**
 * Sends one command over TLS (verifying the server against the stack's CA), after AUTH as the app's user,
 * and returns its reply as text; an error reply, or a failed AUTH, rejects.
 */
export function redisCommand(
  port: number,
  args: readonly string[],
  options: RedisCommandOptions = {},
): Promise<string> {
  const timeoutMs = options.timeoutMs ?? 2000;
  const auth =
    options.auth === undefined ? ([STACK_REDIS.user, STACK_REDIS.password] as const) : options.auth;
  const commands = [...(auth === null ? [] : [['AUTH', ...auth]]), args];
  return new Promise((resolve, reject) => {
    const socket = options.plaintext
      ? net.connect({ host: STACK_HOST, port })
      : tls.connect({ host: STACK_HOST, port, ca: fs.readFileSync(STACK_TLS.ca) });
    let buffer = Buffer.alloc(0);
    const replies: (string | Error)[] = [];
    let settled = false;
    const finish = (error: Error | null, reply?: string): void => {
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
        buffer = buffer.subarray(parsed.length);
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

export const redis: ServerSpec = {
  name: 'redis',
  ...paths,
  port: STACK_PORTS.redis,
  ports: [STACK_PORTS.redis],
  dependsOn: [],
  startTimeoutMs: 30_000,
  stopTimeoutMs: 30_000,
  executable: 'redis-server',
  prepare: async () => {
    await ensureTls();
    fs.mkdirSync(paths.dataDir, { recursive: true });
    fs.copyFileSync(SOURCE_CONFIG, CONFIG_COPY);
  },
  stale: async (pid, argv) => {
    await ensureTls();
    return argumentsChanged(redis, argv) ?? olderThanCertificate(pid);
  },
  command: () => ({
    file: 'redis-server',
    args: [
      CONFIG_COPY,
      // TLS only: no plaintext port; clients authenticate with a password (no client certificates).
      ...['--port', '0', '--tls-port', String(STACK_PORTS.redis), '--bind', STACK_HOST],
      ...[
        '--tls-cert-file',
        STACK_TLS.cert,
        '--tls-key-file',
        STACK_TLS.key,
        '--tls-ca-cert-file',
        STACK_TLS.ca,
      ],
      ...['--user', 'default', 'off'],
      ...['--user', STACK_REDIS.user, 'on', `>${STACK_REDIS.password}`, ...REDIS_APP_ACL],
      ...[
        '--dir',
        paths.dataDir,
        '--pidfile',
        path.join(RUN_DIR, 'redis.server.pid'),
        '--logfile',
        paths.logFile,
      ],
      // Keeps the full command line (with the .stack paths) visible to ps/pgrep and to runningPid().
      ...['--set-proc-title', 'no'],
    ],
  }),
  probe: async () => (await redisCommand(STACK_PORTS.redis, ['PING'])) === 'PONG',
  details: async () => {
    const info = await redisCommand(STACK_PORTS.redis, ['INFO', 'server']);
    const persistence = await redisCommand(STACK_PORTS.redis, ['INFO', 'persistence']);
    return { version: infoField(info, 'redis_version'), aof: infoField(persistence, 'aof_enabled') === '1' };
  },
};
