// nginx and request ids (README "Logs"): the production docker/nginx/nginx.conf, run by a scratch nginx of
// this test's own (its own folder and free ports, never the stack's) in front of one stand-in node. A sane
// X-Request-Id reaches the node as it is; a bad or missing one is replaced by nginx's own; nginx's own error
// answer (no node reachable) carries it too; the access log has it as rid=.
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { freePort } from '../scripts/node-launcher.js';
import { waitFor } from './helpers/events.js';

const NGINX = '/usr/sbin/nginx';

t.test(
  'nginx passes a sane X-Request-Id on, replaces a bad one, and echoes it on its own errors',
  async (t) => {
    if (spawnSync(NGINX, ['-v']).error) {
      t.pass('nginx', { skip: 'nginx is not installed (apt-get install nginx)' });
      return;
    }
    // The stand-in node answers with the request id it received.
    const node = http.createServer((req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(String(req.headers['x-request-id']));
    });
    await new Promise<void>((resolve) => node.listen(0, '127.0.0.1', resolve));
    const nodePort = (node.address() as AddressInfo).port;
    t.teardown(() => new Promise((resolve) => node.close(resolve)));
    const port = await freePort();
    const dir = mkdtempSync(join(tmpdir(), 'nginx-rid-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    mkdirSync(join(dir, 'logs'));
    symlinkSync(join(process.cwd(), 'docker/nginx/nginx.conf'), join(dir, 'nginx.conf'));
    writeFileSync(join(dir, 'upstreams.conf'), `server 127.0.0.1:${nodePort} max_fails=0;\n`);
    writeFileSync(join(dir, 'listen.conf'), `listen 127.0.0.1:${port};\n`);
    const nginx = spawn(
      NGINX,
      [
        '-p',
        `${dir}/`,
        '-c',
        join(dir, 'nginx.conf'),
        '-e',
        'stderr',
        '-g',
        `daemon off; pid ${dir}/nginx.pid;`,
      ],
      { stdio: 'ignore' },
    );
    t.teardown(async () => {
      if (nginx.exitCode !== null) return;
      const exited = new Promise((resolve) => nginx.once('exit', resolve));
      nginx.kill('SIGQUIT'); // graceful: the access log's buffer is written
      await exited;
    });
    const get = async (headers: Record<string, string> = {}) => {
      const res = await fetch(`http://127.0.0.1:${port}/products/1`, { headers });
      return { status: res.status, echoed: res.headers.get('x-request-id'), body: await res.text() };
    };
    await waitFor(
      'nginx to answer',
      () =>
        get().then(
          (r) => r.status === 200,
          () => false,
        ),
      10_000,
    );

    t.equal(
      (await get({ 'x-request-id': 'abc-123' })).body,
      'abc-123',
      'a sane id reaches the node as it is',
    );
    const nginxId = /^[0-9a-f]{32}$/;
    for (const bad of ['x'.repeat(65), 'bad id!', 'a,b']) {
      const { body } = await get({ 'x-request-id': bad });
      t.match(body, nginxId, `${JSON.stringify(bad.slice(0, 12))} is replaced by nginx's own id`);
    }
    t.match((await get()).body, nginxId, 'none: nginx makes one');

    await new Promise((resolve) => node.close(resolve));
    node.closeAllConnections();
    const down = await get({ 'x-request-id': 'abc-456' });
    t.equal(down.status, 503, 'no node: nginx answers NO_NODE_AVAILABLE itself');
    t.equal(down.echoed, 'abc-456', 'with the request id');

    const exited = new Promise((resolve) => nginx.once('exit', resolve));
    nginx.kill('SIGQUIT');
    await exited;
    const rids = [...readFileSync(join(dir, 'logs', 'access.log'), 'utf8').matchAll(/rid=(\S+)/g)].map(
      (m) => m[1],
    );
    t.ok(rids.includes('abc-123') && rids.includes('abc-456'), 'the access log has the ids as rid=');
  },
);
