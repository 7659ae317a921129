/**
 * What one loopback TCP round trip costs the caller on this machine, CPU-µs: back to back, and after a pause
 * (the loop slept and is woken by the answer, as a node at a low rate is for most of its I/O).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { spawn } from 'node:child_process';
import { connect, type Socket } from 'node:net';

const ECHO_SERVER = `
const net = require('node:net');
const server = net.createServer((c) => { c.setNoDelay(true); c.on('data', (d) => c.write(d)); });
server.listen(0, '127.0.0.1', () => process.send(server.address().port));
process.on('disconnect', () => process.exit(0));
`;

async function roundTrips(socket: Socket, count: number, gapMs: number): Promise<number> {
  const payload = Buffer.alloc(200, 1);
  let cpuUs = 0;
  for (let i = 0; i < count; i += 1) {
    if (gapMs > 0) await sleep(gapMs);
    const before = process.cpuUsage();
    await new Promise<void>((resolve) => {
      let got = 0;
      const onData = (chunk: Buffer) => {
        got += chunk.length;
        if (got < payload.length) return;
        socket.off('data', onData);
        resolve();
      };
      socket.on('data', onData);
      socket.write(payload);
    });
    const used = process.cpuUsage(before);
    cpuUs += used.user + used.system;
  }
  return cpuUs / count;
}

/** Runs the probe (~3 s): `count` round trips each way; caller CPU-µs per round trip back to back (`busyUs`)
 * and after a `gapMs` pause (`afterSleepUs`: the loop slept and was woken by the answer). */
export async function probeIo(count = 500, gapMs = 5) {
  const child = spawn(process.execPath, ['-e', ECHO_SERVER], {
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  });
  try {
    const port = await new Promise<number>((resolve, reject) => {
      child.once('message', (m) => resolve(Number(m)));
      child.once('error', reject);
      child.once('exit', (code) => reject(new Error(`io probe: echo server exited (${code})`)));
    });
    const socket = connect(port, '127.0.0.1');
    socket.setNoDelay(true);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    try {
      await roundTrips(socket, 50, 0); // warm-up
      const busyUs = await roundTrips(socket, count, 0);
      const afterSleepUs = await roundTrips(socket, count, gapMs);
      return { busyUs: Math.round(busyUs), afterSleepUs: Math.round(afterSleepUs), gapMs, roundTrips: count };
    } finally {
      socket.destroy();
    }
  } finally {
    child.kill();
  }
}
