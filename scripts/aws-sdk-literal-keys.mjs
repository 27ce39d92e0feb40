// npm postinstall: applies the AWS SDK's pending fix for aws/aws-sdk-js-v3#7607 to the installed
// schema files (node_modules/@aws-sdk/**/dist-es/**/schemas/schemas_<n>.js).
//
// Those files write member traits as `{ [_xN]: _aa }`, where `const _xN = "xmlName"` is a string at
// the file's top level. esbuild must assume a computed key may have side effects, so it keeps every
// schema of the file: any one EC2 command costs the Lambda bundle ~550 KB of @aws-sdk/client-ec2
// schemas. The upstream fix (smithy-lang/smithy-typescript#1889) emits `{ "xmlName": _aa }`; this
// script does the same, and nothing else, to the files npm installed.
//
// Delete this script (and the postinstall entry in package.json) once the SDK ships literal keys:
// then this prints that it found nothing to rewrite, and `npm run bench:coldstart` shows no
// difference with or without it.
import { readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { basename, dirname, join, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ISSUE = 'aws/aws-sdk-js-v3#7607';

/** The TypeScript compiler (a devDependency, CommonJS); absent after `npm ci --omit=dev`. */
let ts;
try {
  ts = createRequire(import.meta.url)('typescript');
} catch {
  ts = undefined;
}

/**
 * Rewrites `{ [name]: value }` to `{ "text": value }` where `name` is a top-level
 * `const name = "text"` of the module, and returns the new text and how many keys it rewrote.
 *
 * Equivalent by construction: a computed key whose value is a string defines the same property
 * as that string as a literal key. To be sure which binding `name` refers to, `name` must be
 * declared nowhere else in the file (no inner const, parameter, function, import of that name).
 * The one exception is `__proto__`, which as a literal key sets the prototype instead, so it stays
 * computed. (The only other difference: an object built before the const is initialised throws a
 * ReferenceError as written and would not after; the SDK's files declare their constants first.)
 */
export function literalKeys(sourceText) {
  if (!ts) throw new Error('the typescript package cannot be loaded');
  const file = ts.createSourceFile('schemas.js', sourceText, ts.ScriptTarget.Latest, true, ts.ScriptKind.JS);
  // parseDiagnostics is not in TypeScript's public typings, but it is where syntax errors go.
  const syntaxError = file.parseDiagnostics?.[0];
  if (syntaxError) throw new Error(ts.flattenDiagnosticMessageText(syntaxError.messageText, ' '));

  const strings = new Map(); // top-level const name → its string
  for (const statement of file.statements) {
    if (!ts.isVariableStatement(statement)) continue;
    const list = statement.declarationList;
    if ((list.flags & ts.NodeFlags.BlockScoped) !== ts.NodeFlags.Const) continue;
    for (const { name, initializer } of list.declarations) {
      if (ts.isIdentifier(name) && initializer && ts.isStringLiteral(initializer)) strings.set(name.text, initializer.text);
    }
  }

  // Names bound more than once anywhere in the file might be shadowed where they are used.
  const bindings = new Map();
  const edits = [];
  (function visit(node) {
    if (ts.isIdentifier(node) && isBindingName(node)) bindings.set(node.text, (bindings.get(node.text) ?? 0) + 1);
    if (
      ts.isPropertyAssignment(node) &&
      ts.isComputedPropertyName(node.name) &&
      ts.isIdentifier(node.name.expression) &&
      !isDestructuringTarget(node.parent)
    ) {
      edits.push({ key: node.name, name: node.name.expression.text });
    }
    ts.forEachChild(node, visit);
  })(file);

  let text = '';
  let copied = 0;
  let keys = 0;
  for (const { key, name } of edits) {
    const value = strings.get(name);
    if (value === undefined || value === '__proto__' || bindings.get(name) !== 1) continue;
    text += sourceText.slice(copied, key.getStart(file)) + JSON.stringify(value);
    copied = key.end;
    keys++;
  }
  return { text: text + sourceText.slice(copied), keys };
}

/** Whether an identifier introduces a binding (a declaration's or parameter's own name). */
function isBindingName(node) {
  const { parent } = node;
  return (
    (ts.isVariableDeclaration(parent) ||
      ts.isParameter(parent) ||
      ts.isBindingElement(parent) ||
      ts.isFunctionDeclaration(parent) ||
      ts.isFunctionExpression(parent) ||
      ts.isClassDeclaration(parent) ||
      ts.isClassExpression(parent) ||
      ts.isImportClause(parent) ||
      ts.isImportSpecifier(parent) ||
      ts.isNamespaceImport(parent)) &&
    parent.name === node
  );
}

/** Whether an object literal is assigned to (`({ [k]: v } = o)`) rather than built: left alone. */
function isDestructuringTarget(node) {
  for (;;) {
    const { parent } = node;
    if (ts.isBinaryExpression(parent)) return parent.left === node && parent.operatorToken.kind === ts.SyntaxKind.EqualsToken;
    if (ts.isForOfStatement(parent) || ts.isForInStatement(parent)) return parent.initializer === node;
    const container =
      ts.isObjectLiteralExpression(parent) ||
      ts.isArrayLiteralExpression(parent) ||
      ts.isParenthesizedExpression(parent) ||
      ts.isSpreadElement(parent) ||
      ts.isSpreadAssignment(parent) ||
      (ts.isPropertyAssignment(parent) && parent.initializer === node);
    if (!container) return false;
    node = parent;
  }
}

/** node_modules/@aws-sdk/**\/dist-es/**\/schemas/schemas_<n>.js */
function schemaFiles(sdkDir) {
  return readdirSync(sdkDir, { recursive: true })
    .map((relative) => relative.split(sep))
    .filter((parts) => /^schemas_\d+\.js$/.test(parts.at(-1)) && parts.at(-2) === 'schemas' && parts.includes('dist-es'))
    .map((parts) => join(sdkDir, ...parts));
}

/** Replaces the file in one step: a reader sees the old or the new text, never half of it. */
function writeAtomically(file, text) {
  const temporary = join(dirname(file), `.${basename(file)}.${process.pid}.tmp`);
  try {
    writeFileSync(temporary, text, { mode: statSync(file).mode });
    renameSync(temporary, file);
  } catch (error) {
    rmSync(temporary, { force: true });
    throw error;
  }
}

function main() {
  const warn = (message) => console.warn(`aws-sdk-literal-keys: warning: ${message}; the Lambda bundle will be larger (${ISSUE})`);
  if (!ts) return warn('cannot load the typescript package, schema files left as installed');
  const sdkDir = join(dirname(fileURLToPath(import.meta.url)), '..', 'node_modules', '@aws-sdk');
  let files;
  try {
    files = schemaFiles(sdkDir);
  } catch (error) {
    return warn(`cannot list ${sdkDir} (${error.code ?? error.message}), schema files left as installed`);
  }
  let rewritten = 0;
  let keys = 0;
  for (const file of files) {
    try {
      const result = literalKeys(readFileSync(file, 'utf8'));
      if (result.keys === 0) continue;
      writeAtomically(file, result.text);
      rewritten++;
      keys += result.keys;
    } catch (error) {
      warn(`${file} left as installed (${error.message})`);
    }
  }
  const count = (n, what) => `${n.toLocaleString('en-US')} ${what}${n === 1 ? '' : 's'}`;
  console.log(
    keys
      ? `aws-sdk-literal-keys: ${count(rewritten, 'file')}, ${count(keys, 'computed key')} made literal (${ISSUE})`
      : `aws-sdk-literal-keys: no computed keys to make literal in ${count(files.length, 'schema file')} (already done, or the SDK ships literal keys: then this script can probably be removed, ${ISSUE})`,
  );
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) main();
