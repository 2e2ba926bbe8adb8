/**
 * Lists the longest functions under `lib/` (name, file, lines), longest first.
 *
 *   npx tsx scripts/longest-functions.ts [count=10] [root=lib]
 *
 * A function is any declaration, method, accessor, constructor, function expression or arrow
 * function; its length counts the lines from its first to its last, both included. A nested
 * function is counted on its own and also inside its parent, as a reader sees it.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import ts from 'typescript';

interface FunctionLength {
  readonly name: string;
  readonly file: string;
  readonly line: number;
  readonly lines: number;
}

function typeScriptFiles(directory: string): string[] {
  return readdirSync(directory, { withFileTypes: true }).flatMap((entry) => {
    const path = join(directory, entry.name);
    if (entry.isDirectory()) return typeScriptFiles(path);
    return entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts') ? [path] : [];
  });
}

/** The name a reader would search for: the declared name, or the variable/property it is bound to. */
function functionName(node: ts.FunctionLikeDeclaration, source: ts.SourceFile): string {
  if (ts.isConstructorDeclaration(node)) return 'constructor';
  if (node.name !== undefined) return node.name.getText(source);
  const parent = node.parent;
  if (ts.isVariableDeclaration(parent) || ts.isPropertyAssignment(parent))
    return parent.name.getText(source);
  if (ts.isCallExpression(parent)) return `<callback of ${parent.expression.getText(source)}>`;
  return '<anonymous>';
}

function functionLengths(file: string, root: string): FunctionLength[] {
  const source = ts.createSourceFile(
    file,
    readFileSync(file, 'utf8'),
    ts.ScriptTarget.Latest,
    true,
  );
  const found: FunctionLength[] = [];
  const visit = (node: ts.Node): void => {
    if (ts.isFunctionLike(node) && 'body' in node && node.body !== undefined) {
      const declaration = node as ts.FunctionLikeDeclaration;
      const first = source.getLineAndCharacterOfPosition(declaration.getStart(source)).line;
      const last = source.getLineAndCharacterOfPosition(declaration.getEnd()).line;
      found.push({
        name: functionName(declaration, source),
        file: relative(root, file),
        line: first + 1,
        lines: last - first + 1,
      });
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

const count = Number(process.argv[2] ?? 10);
const directory = process.argv[3] ?? 'lib';
const all = typeScriptFiles(directory).flatMap((file) => functionLengths(file, process.cwd()));
all.sort((a, b) => b.lines - a.lines || a.file.localeCompare(b.file));
for (const fn of all.slice(0, count))
  console.log(`${String(fn.lines).padStart(4)}  ${fn.name}  ${fn.file}:${fn.line}`);
