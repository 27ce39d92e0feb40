import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['node_modules/', 'cdk.out/', 'dist/', 'coverage/', '.lab/'] },
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  {
    // Dependencies point one way: what we ship (and the lab users run) never reaches into test/.
    files: ['cdk/**', 'lambdas/**', 'lib/**', 'node-agent/**', 'cli/**', 'lab/**'],
    rules: {
      'no-restricted-imports': ['error', { patterns: [{ regex: '(^|/)test/', message: 'shipped code must not import test/: move what it needs out of test/' }] }],
    },
  },
);
