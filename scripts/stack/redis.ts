// Redis: started from docker/redis/redis.conf with local port, paths and loopback bind on the command line.
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { DOCKER_DIR, RUN_DIR, STACK_HOST, STACK_PORTS, serverPaths } from './layout.js';
import type { ServerSpec } from './server.js';

const paths = serverPaths('redis');
const SOURCE_CONFIG = path.join(DOCKER_DIR, 'redis', 'redis.conf');
// CONFIG REWRITE rewrites the file a server started from: it must be this copy, never the one in docker/.
const CONFIG_COPY = path.join(paths.dataDir, 'redis.conf');

/** Sends one command and returns its reply as text (errors reject); enough RESP for PING and INFO. */
export function redisCommand(port: number, args: readonly string[], timeoutMs = 2000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: STACK_HOST, port });
    let buffer = Buffer.alloc(0);
    const finish = (error: Error | null, reply?: string): void => {
      socket.destroy();
      if (error !== null) reject(error);
      else resolve(reply ?? '');
    };
    socket.setTimeout(timeoutMs, () =>
      finish(new Error(`redis on ${port}: no reply within ${timeoutMs} ms`)),
    );
    socket.once('error', (error) => finish(error));
    socket.once('connect', () => {
      socket.write(
        `*${args.length}\r\n${args.map((arg) => `$${Buffer.byteLength(arg)}\r\n${arg}\r\n`).join('')}`,
      );
    });
    socket.on('data', (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      const lineEnd = buffer.indexOf('\r\n');
      if (lineEnd < 0) return;
      const type = String.fromCharCode(buffer[0] ?? 0);
      const line = buffer.subarray(1, lineEnd).toString();
      if (type === '-') finish(new Error(line));
      else if (type === '$') {
        const length = Number(line);
        if (length < 0) finish(null, '');
        else if (buffer.length >= lineEnd + 2 + length)
          finish(null, buffer.subarray(lineEnd + 2, lineEnd + 2 + length).toString());
      } else finish(null, line);
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
  prepare: () => {
    fs.mkdirSync(paths.dataDir, { recursive: true });
    fs.copyFileSync(SOURCE_CONFIG, CONFIG_COPY);
    return Promise.resolve();
  },
  command: () => ({
    file: 'redis-server',
    args: [
      CONFIG_COPY,
      ...['--port', String(STACK_PORTS.redis), '--bind', STACK_HOST],
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
