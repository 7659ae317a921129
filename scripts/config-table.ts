// Rewrites the README's settings table from the settings table (src/config/settings.ts):
// npx tsx scripts/config-table.ts   (test/config-table.test.ts fails while the README differs)
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { withSettingsTable } from '../src/config/docs.js';

const path = join(import.meta.dirname, '..', 'README.md');
const before = readFileSync(path, 'utf8');
const after = withSettingsTable(before);
if (after === before) console.log('README.md: the settings table is up to date');
else {
  writeFileSync(path, after);
  console.log('README.md: settings table rewritten');
}
