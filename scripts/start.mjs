#!/usr/bin/env node
// `npm start` (after `node scripts/setup.mjs --build`: packages, the local stack with its nginx, dist/):
// runs the app nodes behind the stack's nginx, in the foreground until Ctrl-C.
//
//   clients → nginx 127.0.0.1:8080 (docker/nginx/nginx.conf, `npm run stack`) → node-1 127.0.0.1:8081
//                                                                              → node-2 127.0.0.1:8082
//
// Each node is `node dist/src/main.js` with HOST=127.0.0.1, PORT=<its port>, NODE_ID=node-<n> (the rest of
// the environment is passed on). Their ports are the ones nginx balances over: read from the stack's
// .stack/nginx/upstreams.conf, which scripts/stack/nginx.ts writes from scripts/stack/layout.ts. PORT in the
// environment does not move anything: nginx stays on 8080. APP_NODES=1 runs node-1 only (nginx then passes
// over the missing node-2).
//
// Each running node is listed for the stack's Prometheus (scripts/stack/scrape-targets.mjs, label `node`).
// Their JSON log lines (pino, each with its `node`) go to stdout as they are, anything else prefixed with
// `[node-n]`. SIGINT/SIGTERM (SIGHUP too) are forwarded to every node, which drains its in-flight requests;
// a second Ctrl-C makes them exit at once. A node that dies is reported and the other keeps serving.
// The nodes run in process groups of their own, so a Ctrl-C reaches them once, through this script; if this
// script is killed with SIGKILL they keep running (their ports then show up as taken on the next start).
//   node scripts/start.mjs
/* global process, console -- a plain Node script, linted without type information */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import readline from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { SERVICE_NODE_FLAGS } from './service-flags.mjs';
import { registerNodeTarget } from './stack/scrape-targets.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const MAIN = path.join(ROOT, 'dist', 'src', 'main.js');
const UPSTREAMS = path.join(ROOT, '.stack', 'nginx', 'upstreams.conf');
const HOST = '127.0.0.1';
/** nginx's port (scripts/stack/layout.ts STACK_PORTS.nginx): the service's address for clients. */
const NGINX_PORT = 8080;
/** Migrations, Kafka topics and the saga sweep come before a first 200 from /ready. */
const READY_TIMEOUT_MS = 90_000;
const TAIL_LINES = 30;
/** One Ctrl-C can arrive twice (from the terminal and forwarded by npm): a repeat this soon is the same one. */
const SAME_SIGNAL_MS = 1000;

function say(message) {
  console.log(`start: ${message}`);
}

function fail(message) {
  console.error(`start: ${message}`);
  process.exit(1);
}

/** The app nodes nginx balances over, in upstreams.conf order: node-1, node-2, … */
function appNodes() {
  let text;
  try {
    text = fs.readFileSync(UPSTREAMS, 'utf8');
  } catch {
    fail(
      `${path.relative(ROOT, UPSTREAMS)} is missing: start the stack first (node scripts/setup.mjs --build)`,
    );
  }
  const ports = [...text.matchAll(/^\s*server\s+127\.0\.0\.1:(\d+)/gm)].map((match) => Number(match[1]));
  if (ports.length === 0) fail(`${UPSTREAMS} lists no 127.0.0.1 server`);
  const wanted = process.env.APP_NODES === undefined ? ports.length : Number(process.env.APP_NODES);
  if (!Number.isInteger(wanted) || wanted < 1 || wanted > ports.length)
    fail(`APP_NODES must be an integer from 1 to ${ports.length}, not '${process.env.APP_NODES}'`);
  return ports.slice(0, wanted).map((port, index) => ({ id: `node-${index + 1}`, port }));
}

/** True when something accepts TCP connections on the loopback port. */
function portAnswers(port) {
  return new Promise((resolve) => {
    const socket = net.connect({ host: HOST, port });
    const done = (answered) => {
      socket.destroy();
      resolve(answered);
    };
    socket.setTimeout(500, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

function portOwner(port) {
  const result = spawnSync('ss', ['-ltnpH', `sport = :${port}`], { encoding: 'utf8' });
  const pid = /pid=(\d+)/.exec(result.stdout ?? '')?.[1];
  if (pid === undefined) return 'another process';
  try {
    const argv = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
    return `pid ${pid} (${argv.slice(0, 160)})`;
  } catch {
    return `pid ${pid}`;
  }
}

/** GET on the loopback port: `{status, body, server}`, whatever the status; rejects when nothing answers. */
function get(port, urlPath, timeoutMs = 2000) {
  return new Promise((resolve, reject) => {
    const request = http.get(
      { host: HOST, port, path: urlPath, agent: false, timeout: timeoutMs },
      (response) => {
        let body = '';
        response.setEncoding('utf8');
        response.on('data', (chunk) => (body += chunk));
        response.once('end', () =>
          resolve({ status: response.statusCode, body, server: response.headers.server }),
        );
      },
    );
    request.once('timeout', () => request.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    request.once('error', reject);
  });
}

/** Starts one node in its own process group; its output is relayed line by line and the last lines kept. */
function startNode({ id, port }) {
  const child = spawn(process.execPath, [...SERVICE_NODE_FLAGS, MAIN], {
    cwd: ROOT,
    env: { ...process.env, HOST, PORT: String(port), NODE_ID: id },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  const node = { id, port, child, tail: [], exitCode: undefined, signal: undefined };
  const relay = (stream, out) =>
    readline.createInterface({ input: stream, crlfDelay: Infinity }).on('line', (line) => {
      node.tail.push(line);
      if (node.tail.length > TAIL_LINES) node.tail.shift();
      // pino's lines carry `"node":"node-n"` already; keep them JSON for log tools.
      out.write(line.startsWith('{') ? `${line}\n` : `[${id}] ${line}\n`);
    });
  relay(child.stdout, process.stdout);
  relay(child.stderr, process.stderr);
  // The stack's Prometheus scrapes the node while it runs (a file_sd target file, removed when it exits).
  const unregister =
    child.pid === undefined ? () => {} : registerNodeTarget({ port, node: id, pid: child.pid });
  child.once('exit', unregister);
  // 'close': the process has exited and its output has been read to the end.
  node.closed = new Promise((resolve) => {
    child.once('error', (error) => {
      node.tail.push(`cannot start ${process.execPath}: ${error.message}`);
      node.exitCode = 127;
      resolve();
    });
    child.once('close', (code, signal) => {
      node.exitCode = code;
      node.signal = signal;
      resolve();
    });
  });
  return node;
}

const running = (node) => node.exitCode === undefined;
const howExited = (node) => (node.signal ? `signal ${node.signal}` : `code ${node.exitCode}`);
const tailOf = (node) =>
  `--- last log lines of ${node.id} ---\n${node.tail.join('\n') || '(no output)'}\n--- end of ${node.id} ---`;

/** Polls /ready until 200; rejects with what the node last said when it exits or the timeout passes. */
async function waitReady(node) {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  let last;
  for (;;) {
    if (!running(node)) throw new Error(`${node.id} exited (${howExited(node)}) before it was ready`);
    try {
      const answer = await get(node.port, '/ready');
      if (answer.status === 200) return;
      last = `${answer.status} ${answer.body.replace(/\s+/g, ' ').slice(0, 300)}`;
    } catch (error) {
      last = error.message;
    }
    if (Date.now() > deadline)
      throw new Error(
        `${node.id} did not answer 200 on http://${HOST}:${node.port}/ready within ${READY_TIMEOUT_MS / 1000} s (last answer: ${last})`,
      );
    await sleep(250);
  }
}

async function main() {
  if (!fs.existsSync(MAIN))
    fail(`${path.relative(ROOT, MAIN)} is missing: build first (node scripts/setup.mjs --build)`);
  const wanted = appNodes();
  if (process.env.PORT !== undefined && process.env.PORT !== String(NGINX_PORT))
    say(
      `PORT=${process.env.PORT} is ignored: clients use nginx on ${NGINX_PORT}, the nodes listen on ${wanted.map((node) => node.port).join(', ')}`,
    );
  const nginx = await get(NGINX_PORT, '/nginx-health').catch(() => undefined);
  if (nginx?.server !== 'nginx')
    fail(`nginx does not answer on ${HOST}:${NGINX_PORT}: start the stack (npm run stack -- up)`);
  for (const { id, port } of wanted)
    if (await portAnswers(port))
      fail(
        `port ${port} for ${id} is already taken by ${portOwner(port)}: another \`npm start\` still running?`,
      );

  const nodes = wanted.map(startNode);
  say(`started ${nodes.map((node) => `${node.id} (pid ${node.child.pid}, :${node.port})`).join(', ')}`);

  let stopping = false;
  let stoppedAt = 0;
  const stopAll = (signal) => {
    for (const node of nodes.filter(running)) {
      try {
        process.kill(node.child.pid, signal);
      } catch {
        // Already gone; its 'close' reports it.
      }
    }
  };
  const onSignal = (signal) => {
    if (stopping && Date.now() - stoppedAt < SAME_SIGNAL_MS) return;
    const again = stopping;
    stopping = true;
    stoppedAt = Date.now();
    const forward = signal === 'SIGHUP' ? 'SIGTERM' : signal;
    const live = nodes.filter(running).map((node) => node.id);
    say(
      again
        ? `${signal} again: ${live.join(', ')} exit at once`
        : `${signal}: stopping ${live.join(', ')} (each drains its in-flight requests; Ctrl-C again to exit at once)`,
    );
    stopAll(forward);
  };
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(signal, onSignal);
  // Whatever ends this script, the nodes do not outlive it silently (SIGKILL aside).
  process.on('exit', () => stopAll('SIGTERM'));

  // Startup: every node must become ready; the first failure stops the others at once.
  const failed = [];
  await Promise.all(
    nodes.map((node) =>
      waitReady(node).catch((error) => {
        if (stopping) return; // stopped by a signal or by another node's failure: not a cause
        failed.push({ node, error });
        stopping = true;
        stopAll('SIGTERM');
      }),
    ),
  );
  if (stopping) {
    await Promise.all(nodes.map((node) => node.closed));
    for (const { node, error } of failed) console.error(`start: ${error.message}\n${tailOf(node)}`);
    fail(failed.length > 0 ? 'not serving: stopped every node' : 'stopped before the nodes were ready');
  }
  const routes = nodes.map((node) => `${node.id} :${node.port}`).join(', ');
  say(`serving on http://${HOST}:${NGINX_PORT} (nginx → ${routes}); Ctrl-C to stop`);

  // Running: report each exit; the service lives on while one node does.
  await Promise.all(
    nodes.map(async (node) => {
      await node.closed;
      const others = nodes.filter(running).map((other) => other.id);
      if (stopping) {
        say(`${node.id} stopped (${howExited(node)})`);
      } else {
        console.error(
          `start: ${node.id} (pid ${node.child.pid}) exited unexpectedly (${howExited(node)})\n${tailOf(node)}`,
        );
        if (others.length > 0)
          say(
            `${others.join(', ')} keeps serving behind nginx on :${NGINX_PORT}, which passes over ${node.id}`,
          );
      }
    }),
  );
  const clean = stopping && nodes.every((node) => node.exitCode === 0);
  if (!stopping) say('no app node left: exiting');
  process.exit(clean ? 0 : 1);
}

main().catch((error) => fail(error.stack ?? error.message));
