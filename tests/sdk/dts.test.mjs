// Keeps sdk/relaycast.d.ts in step with the SDK's code (TypeScript's own parser and checker,
// from tests/e2e/node_modules): the exported names, the public methods of the exported classes,
// and the option names the code reads must match the declarations; and a strict compile of
// tests/sdk/usage.ts against the declarations must pass.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const require = createRequire(path.join(ROOT, 'tests/e2e/package.json'));
const ts = require('typescript');
const DTS = path.join(ROOT, 'sdk/relaycast.d.ts');
const SDK_FILES = ['sdk/relaycast.js', ...fs.readdirSync(path.join(ROOT, 'sdk/lib')).map((n) => `sdk/lib/${n}`)];

const hasExport = (node) => !!ts.getModifiers?.(node)?.some((m) => m.kind === ts.SyntaxKind.ExportKeyword);

/** Declarations of the .d.ts: exported values, exported types, classes (with members and base), option interfaces. */
function readDeclarations() {
  const sf = ts.createSourceFile(DTS, fs.readFileSync(DTS, 'utf8'), ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const values = new Set();
  const types = new Set();
  const classes = new Map();
  const interfaces = new Map();
  for (const st of sf.statements) {
    if (ts.isClassDeclaration(st) && st.name) {
      const members = new Set(st.members.filter((m) => m.name && !ts.isConstructorDeclaration(m)).map((m) => m.name.getText(sf)));
      const methods = new Set(st.members.filter((m) => ts.isMethodDeclaration(m)).map((m) => m.name.getText(sf)));
      const base = st.heritageClauses?.[0]?.types[0]?.expression.getText(sf) ?? null;
      classes.set(st.name.text, { members, methods, base });
      if (hasExport(st)) values.add(st.name.text);
    } else if (ts.isFunctionDeclaration(st) && st.name && hasExport(st)) {
      values.add(st.name.text);
    } else if (ts.isVariableStatement(st) && hasExport(st)) {
      for (const d of st.declarationList.declarations) values.add(d.name.getText(sf));
    } else if (ts.isExportAssignment(st)) {
      values.add('default');
    } else if (ts.isInterfaceDeclaration(st)) {
      interfaces.set(st.name.text, st.members.filter((m) => m.name).map((m) => m.name.getText(sf)));
      if (hasExport(st)) types.add(st.name.text);
    } else if (ts.isTypeAliasDeclaration(st) && hasExport(st)) {
      types.add(st.name.text);
    }
  }
  return { values, types, classes, interfaces };
}

/** Members of a declared class and its declared bases. */
function declaredMembers(classes, name, pick = 'members') {
  const out = new Set();
  for (let c = classes.get(name); c; c = classes.get(c.base)) for (const m of c[pick]) out.add(m);
  return out;
}

/** Public (no leading underscore) methods of a runtime class up to EventTarget. */
function runtimeMethods(cls) {
  const out = new Set();
  for (let p = cls.prototype; p && p !== EventTarget.prototype && p !== Error.prototype && p !== Object.prototype; p = Object.getPrototypeOf(p)) {
    for (const [k, d] of Object.entries(Object.getOwnPropertyDescriptors(p))) {
      if (k !== 'constructor' && !k.startsWith('_') && typeof d.value === 'function') out.add(k);
    }
  }
  return out;
}

/** Option names the SDK's code reads: `options.X`, `opts.X`, `this.options.X`, and destructured option parameters. */
function optionsReadByCode() {
  const names = new Map(); // name -> first place seen
  for (const file of SDK_FILES.filter((f) => !/\/(connection|signaling|errors)\.js$/.test(f))) {
    const text = fs.readFileSync(path.join(ROOT, file), 'utf8');
    const sf = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.JS);
    const visit = (node) => {
      if (ts.isPropertyAccessExpression(node) && /^(options|opts|this\.options)$/.test(node.expression.getText(sf))) {
        if (!names.has(node.name.text)) names.set(node.name.text, `${file}:${sf.getLineAndCharacterOfPosition(node.pos).line + 1}`);
      }
      if (ts.isParameter(node) && ts.isObjectBindingPattern(node.name)) {
        for (const el of node.name.elements) {
          const n = (el.propertyName ?? el.name).getText(sf);
          if (!names.has(n)) names.set(n, `${file}:${sf.getLineAndCharacterOfPosition(el.pos).line + 1}`);
        }
      }
      ts.forEachChild(node, visit);
    };
    visit(sf);
  }
  return names;
}

test('relaycast.d.ts declares exactly the values relaycast.js exports', async () => {
  const { values } = readDeclarations();
  const mod = await import(path.join(ROOT, 'sdk/relaycast.js'));
  const runtime = new Set(Object.keys(mod));
  assert.deepEqual([...runtime].filter((n) => !values.has(n)).sort(), [], 'exported by relaycast.js but not declared in relaycast.d.ts');
  assert.deepEqual([...values].filter((n) => !runtime.has(n)).sort(), [], 'declared in relaycast.d.ts but not exported by relaycast.js');
  assert.equal(mod.default, mod.Relaycast, 'the default export is Relaycast');
});

test('public methods of the exported classes match their declarations', async () => {
  const { classes } = readDeclarations();
  const mod = await import(path.join(ROOT, 'sdk/relaycast.js'));
  for (const name of ['Relaycast', 'WatchSession', 'PublishSession', 'HlsPlayback']) {
    const declared = declaredMembers(classes, name, 'methods');
    const declaredAll = declaredMembers(classes, name);
    const runtime = runtimeMethods(mod[name]);
    const undeclared = [...runtime].filter((m) => !declaredAll.has(m));
    assert.deepEqual(undeclared, [], `${name}: methods of the code missing from relaycast.d.ts`);
    const missing = [...declared].filter((m) => !runtime.has(m) && m !== 'addEventListener');
    assert.deepEqual(missing, [], `${name}: methods declared in relaycast.d.ts that the code lacks`);
  }
});

test('the option names the code reads are the declared options, and every declared option is read', () => {
  const { interfaces } = readDeclarations();
  const declared = new Set();
  for (const [name, members] of interfaces) if (name.endsWith('Options')) for (const m of members) declared.add(m);
  declared.add('token'); // archive() and replayUrl() take an inline `{ token?: string }`.
  const read = optionsReadByCode();
  const undeclared = [...read].filter(([n]) => !declared.has(n)).map(([n, at]) => `${n} (${at})`);
  assert.deepEqual(undeclared, [], 'options read by the code but not declared in relaycast.d.ts');
  const unread = [...declared].filter((n) => !read.has(n));
  assert.deepEqual(unread, [], 'options declared in relaycast.d.ts that the code never reads');
});

test('a strict TypeScript compile of an SDK user against relaycast.d.ts passes', () => {
  const program = ts.createProgram([path.join(ROOT, 'tests/sdk/usage.ts')], {
    strict: true, noEmit: true, target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext,
    moduleResolution: ts.ModuleResolutionKind.Bundler, lib: ['lib.es2022.d.ts', 'lib.dom.d.ts'], types: [], skipLibCheck: false,
  });
  const diags = ts.getPreEmitDiagnostics(program).map((d) => {
    const where = d.file ? `${path.relative(ROOT, d.file.fileName)}:${d.file.getLineAndCharacterOfPosition(d.start ?? 0).line + 1}: ` : '';
    return where + ts.flattenDiagnosticMessageText(d.messageText, '\n');
  });
  assert.deepEqual(diags, []);
  const files = program.getSourceFiles().map((f) => path.relative(ROOT, f.fileName));
  assert.ok(files.includes('sdk/relaycast.d.ts'), `the declarations were used (${files.filter((f) => !f.includes('node_modules')).join(', ')})`);
});
