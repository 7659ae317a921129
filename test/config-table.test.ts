import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { CONFIG_ENV_NAMES, loadConfig, settingList } from '../src/config.js';
import { withSettingsTable } from '../src/config/docs.js';
import { Setting } from '../src/config/setting.js';
import { RENAMED_ENV, settings } from '../src/config/settings.js';

const screaming = (name: string) => name.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase();

t.test("the README's settings table is the one the settings table generates", async (t) => {
  const readme = readFileSync(join(import.meta.dirname, '..', 'README.md'), 'utf8');
  t.equal(readme, withSettingsTable(readme), 'run `npx tsx scripts/config-table.ts` and commit README.md');
});

t.test(
  "env names match their groups: a group's start with its name, a top-level setting's with none",
  async (t) => {
    const groups = Object.entries(settings)
      .filter(([, value]) => !(value instanceof Setting))
      .map(([key]) => `${screaming(key)}_`);
    for (const [key, value] of Object.entries(settings)) {
      const members = value instanceof Setting ? [value] : settingList(value);
      for (const setting of members) {
        const env = setting.env;
        if (value instanceof Setting) {
          t.notOk(
            groups.some((prefix) => env.startsWith(prefix)),
            `${key} (${env}) is top-level, its name is no group's`,
          );
        } else {
          t.ok(env.startsWith(`${screaming(key)}_`), `${env} belongs to ${key}`);
        }
      }
    }
  },
);

t.test('every variable is documented once, with a default and what it accepts', async (t) => {
  t.equal(new Set(CONFIG_ENV_NAMES).size, settingList().length, 'one setting per variable');
  for (const setting of settingList()) {
    t.match(setting.env, /^[A-Z][A-Z0-9_]*$/, setting.env);
    t.ok(setting.doc.length > 0 && setting.shown.length > 0 && setting.allowed.length > 0, setting.env);
  }
});

t.test('a renamed variable is refused, naming its new name', async (t) => {
  for (const [old, now] of Object.entries(RENAMED_ENV)) {
    t.notOk(CONFIG_ENV_NAMES.includes(old), `${old} is not read`);
    t.ok(CONFIG_ENV_NAMES.includes(now), `${now} is`);
    t.throws(() => loadConfig({ [old]: '1' }), { message: new RegExp(`${old} is no longer read: .*${now}`) });
  }
});
