/** The stack's Prometheus and Alertmanager as the alert tests read them: JSON APIs and polling. */
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { STACK_HOST, STACK_PORTS } from '../../scripts/stack/layout.js';

export const PROMETHEUS = `http://${STACK_HOST}:${STACK_PORTS.prometheus}`;
export const ALERTMANAGER = `http://${STACK_HOST}:${STACK_PORTS.alertmanager}`;

/** GET `url` and parse its JSON; anything but 200 throws with the body. */
export async function getJson<T>(url: string): Promise<T> {
  const res = await request(url);
  if (res.statusCode !== 200) throw new Error(`GET ${url}: ${res.statusCode} ${await res.body.text()}`);
  return (await res.body.json()) as T;
}

/** Polls `probe` every 250 ms until it returns a value; throws naming `what` after `timeoutMs`. */
export async function until<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  timeoutMs: number,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs / 1000} s`);
    await sleep(250);
  }
}
