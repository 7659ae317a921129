// Lint rules that keep promises handled and process.env in one place (see STYLE.md). The layers (who may
// import what, no import cycles) are checked by dependency-cruiser: .dependency-cruiser.cjs.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  {
    ignores: [
      'dist/**',
      'node_modules/**',
      '.stack/**',
      '.tap/**',
      'docker/kafka/target/**',
      'bench/out/**',
      'src/vendor/*.mjs', // generated: scripts/bundle-vendor.mjs
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: {
        projectService: { allowDefaultProject: ['*.js', '*.cjs', 'scripts/*.mjs'] },
        tsconfigRootDir: import.meta.dirname,
      },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      // A binding closures use before its single assignment (wiring cycles in the composition root).
      'prefer-const': ['error', { ignoreReadBeforeAssign: true }],
      '@typescript-eslint/no-misused-promises': ['error', { checksVoidReturn: { arguments: false } }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', ignoreRestSiblings: true }],
      'no-restricted-syntax': [
        'error',
        {
          selector: "MemberExpression[object.name='process'][property.name='env']",
          message: 'Only src/config.ts reads process.env.',
        },
      ],
      // TypeBox's values come bundled as one module: why, and what it saves, in src/vendor/typebox.d.mts.
      '@typescript-eslint/no-restricted-imports': [
        'error',
        ...['typebox', 'typebox/compile'].map((name) => ({
          name,
          allowTypeImports: true,
          message: "Import TypeBox's values from '#typebox' (types may come from 'typebox').",
        })),
      ],
    },
  },
  {
    // A module of the service past 400 lines (counted as `wc -l` does) is doing two things: split it.
    files: ['src/**/*.ts', 'actors/**/*.ts'],
    rules: { 'max-lines': ['error', { max: 400, skipBlankLines: false, skipComments: false }] },
  },
  {
    // src/payment-provider/main.ts, src/db-failover/main.ts: programs of their own, with their own environment.
    files: [
      'src/config.ts',
      'src/payment-provider/main.ts',
      'src/db-failover/main.ts',
      'scripts/**',
      'test/**',
      'bench/**',
      '*.js',
    ],
    rules: { 'no-restricted-syntax': 'off' },
  },
  {
    // The one place TypeBox's values are imported from the package: what the bundle is made of.
    files: ['src/vendor/*.d.mts'],
    rules: { '@typescript-eslint/no-restricted-imports': 'off' },
  },
  {
    // tap's top-level t.test() promises are tracked by tap itself; JSON bodies in tests are untyped by nature.
    files: ['test/**/*.ts'],
    rules: {
      '@typescript-eslint/no-floating-promises': 'off',
      '@typescript-eslint/require-await': 'off',
      '@typescript-eslint/no-explicit-any': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
    },
  },
  {
    files: ['scripts/**/*.mjs', 'test/helpers/*.mjs', '*.js', '*.cjs'],
    ...tseslint.configs.disableTypeChecked,
  },
);
