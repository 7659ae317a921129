// The TypeBox API this code uses, as one module. `#typebox` (package.json `imports`) resolves to typebox.mjs
// beside this file: these exports bundled into one file by scripts/bundle-vendor.mjs (at set-up and in
// `npm run build`); TypeScript reads this file for its types. TypeBox is ~700 ESM files: loaded one by one
// they cost a process 0.45 s of CPU, and 1.9-2.1 s under tap's import hooks (every test file); the bundle
// 0.12-0.14 s. Types alone may still be imported from 'typebox' (`import type`), values only from here.
export { Type } from 'typebox';
export { Compile } from 'typebox/compile';
