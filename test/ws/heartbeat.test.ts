// Heartbeats and the idle timeout on /ws: the server pings every connection; one that answers (as every
// WebSocket client does by itself) stays open however quiet it is, one that answers nothing is closed
// after WS_IDLE_TIMEOUT_S. Runs with the smallest timeout the service accepts (8 s).
import t, { type Test } from 'tap';
import WebSocket from 'ws';
import { startApp } from '../helpers/app.js';
import { wsUrl } from '../helpers/ws-client.js';

const IDLE_TIMEOUT_S = 8;

async function open(t: Test, url: string, autoPong: boolean) {
  const ws = new WebSocket(url, { autoPong });
  t.teardown(() => ws.terminate());
  let pings = 0;
  ws.on('ping', () => (pings += 1));
  const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  return { ws, closed, pings: () => pings };
}

t.test('a connection that answers pings stays; one that answers nothing is closed', async (t) => {
  const running = await startApp(t, { WS_IDLE_TIMEOUT_S: String(IDLE_TIMEOUT_S) });
  const url = wsUrl(running.base);
  const alive = await open(t, url, true);
  const silent = await open(t, url, false);
  const started = Date.now();
  // uWS checks timeouts every 4 s: the silent one is gone within the timeout plus two checks.
  const code = await Promise.race([
    silent.closed,
    new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), (IDLE_TIMEOUT_S + 10) * 1_000)),
  ]);
  t.not(code, undefined, `the connection that never answered was closed (code ${code})`);
  t.ok(silent.pings() > 0, `it had been pinged (${silent.pings()} pings)`);
  t.ok(Date.now() - started >= (IDLE_TIMEOUT_S - 4) * 1_000, 'not before its idle timeout');
  t.equal(alive.ws.readyState, WebSocket.OPEN, 'the one answering pings is still open');
  t.ok(alive.pings() > 0, `it was pinged too (${alive.pings()} pings) and answered`);
  t.equal(running.app.subscriptions.stats().connections, 1, 'the server counts one connection left');
});
