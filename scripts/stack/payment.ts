// The simulated payment provider (src/payment-provider): a Node process run through tsx, faults off.
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { REPO_ROOT, STACK_HOST, STACK_PORTS, serverPaths } from './layout.js';
import type { ServerSpec } from './server.js';

const paths = serverPaths('payment');
const MAIN = path.join(REPO_ROOT, 'src', 'payment-provider', 'main.ts');

/** Every provider setting, so none leaks in from the caller's environment: 5 ms latency, no faults. */
const SETTINGS: Readonly<Record<string, string>> = {
  PAYMENT_HOST: STACK_HOST,
  PAYMENT_PORT: String(STACK_PORTS.payment),
  PAYMENT_LATENCY_MS: '5',
  PAYMENT_DECLINE_RATE: '0',
  PAYMENT_ERROR_RATE: '0',
  PAYMENT_TIMEOUT_RATE: '0',
  PAYMENT_TIMEOUT_HOLD_MS: '30000',
  PAYMENT_SEED: '',
};

/** GET /stats of the running provider. */
function providerStats(timeoutMs = 1000): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const request = http.get(
      { host: STACK_HOST, port: STACK_PORTS.payment, path: '/stats', agent: false, timeout: timeoutMs },
      (response) => {
        let text = '';
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => (text += chunk));
        response.once('end', () => {
          if (response.statusCode !== 200)
            return reject(new Error(`payment: GET /stats answered ${response.statusCode}`));
          try {
            resolve(JSON.parse(text) as Record<string, unknown>);
          } catch {
            reject(new Error('payment: GET /stats answered something other than JSON'));
          }
        });
      },
    );
    request.once('timeout', () => request.destroy(new Error(`payment: no answer within ${timeoutMs} ms`)));
    request.once('error', reject);
  });
}

export const payment: ServerSpec = {
  name: 'payment',
  ...paths,
  port: STACK_PORTS.payment,
  ports: [STACK_PORTS.payment],
  dependsOn: [],
  startTimeoutMs: 30_000,
  stopTimeoutMs: 10_000,
  executable: path.basename(process.execPath),
  prepare: () => {
    fs.mkdirSync(paths.dataDir, { recursive: true });
    return Promise.resolve();
  },
  command: () => ({
    file: process.execPath,
    // --diagnostic-dir keeps reports in the data folder and puts that folder on the command line (runningPid).
    args: [`--diagnostic-dir=${paths.dataDir}`, '--import', 'tsx', MAIN],
    cwd: REPO_ROOT,
    env: SETTINGS,
  }),
  probe: () => providerStats().then(() => true),
  details: async () => ({ stats: await providerStats() }),
};
