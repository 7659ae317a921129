/** Debian's headless Chromium (scripts/setup.mjs installs it), for the pages the stack serves. */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

export const CHROMIUM = '/usr/bin/chromium';

/**
 * Loads `url` in a fresh headless Chromium, lets its scripts run for `budgetMs` of virtual time (Chromium
 * holds that clock while requests are in flight, so their answers are in), and returns the DOM as HTML.
 */
export async function dumpDom(url: string, budgetMs = 8_000, timeoutMs = 30_000): Promise<string> {
  const profile = await mkdtemp(join(tmpdir(), 'chromium-'));
  try {
    const { stdout } = await promisify(execFile)(
      CHROMIUM,
      [
        '--headless',
        // Root has no user namespace sandbox here; the page is our own.
        '--no-sandbox',
        '--disable-gpu',
        '--no-first-run',
        `--user-data-dir=${profile}`,
        `--virtual-time-budget=${budgetMs}`,
        '--dump-dom',
        url,
      ],
      { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 },
    );
    return stdout;
  } finally {
    await rm(profile, { recursive: true, force: true });
  }
}
