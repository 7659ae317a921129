// TypeBox's values come from one bundled module (`#typebox`, src/vendor/typebox.d.mts): it is current for the
// installed TypeBox, and it is TypeBox (the schemas it builds validate as the package's own compiler says).
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import t from 'tap';
import { Compile as PackageCompile } from 'typebox/compile'; // eslint-disable-line @typescript-eslint/no-restricted-imports -- the reference this test compares with
import { Compile, Type } from '#typebox';
import { REPO_ROOT } from '../../scripts/stack/layout.js';

const execFileAsync = promisify(execFile);

t.test('the bundle was made from the installed TypeBox and the exports the facade names', async (t) => {
  const run = execFileAsync(process.execPath, ['scripts/bundle-vendor.mjs', '--check'], { cwd: REPO_ROOT });
  await t.resolves(run, 'scripts/bundle-vendor.mjs --check exits 0');
});

t.test("the bundle's schemas validate as the package's compiler says", async (t) => {
  const schema = Type.Object({ quantity: Type.Integer({ minimum: 1, maximum: 5 }), key: Type.String() });
  const bundled = Compile(schema);
  const reference = PackageCompile(schema);
  for (const value of [
    { quantity: 1, key: 'k' },
    { quantity: 0, key: 'k' },
    { quantity: 6 },
    { quantity: 2.5, key: 'k' },
    'x',
  ]) {
    t.equal(bundled.Check(value), reference.Check(value), `Check(${JSON.stringify(value)})`);
    t.same(
      [...bundled.Errors(value)].map((e) => e.instancePath),
      [...reference.Errors(value)].map((e) => e.instancePath),
      `Errors(${JSON.stringify(value)})`,
    );
  }
  t.equal(bundled.Check({ quantity: 1, key: 'k' }), true, 'a valid body passes');
  t.equal(bundled.Check({ quantity: 0, key: 'k' }), false, 'a quantity below 1 fails');
});
