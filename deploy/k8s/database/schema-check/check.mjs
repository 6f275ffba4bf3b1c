// Checks the operator's objects in a rendered manifest offline, in two
// ways, because neither alone is strict: CloudNativePG's API schemas
// (generated from its Go API types, as its CRDs are) for types, enums and
// required fields, and TypeScript's excess-property check for fields the
// API does not have (a typo the operator would silently drop).
// Usage: node check.mjs RENDERED.yaml REST.yaml — writes every other object
// to REST.yaml for kubernetes-validate.
import { readFileSync, writeFileSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";
import { parseAllDocuments, stringify } from "yaml";

const OPERATOR_GROUP = "postgresql.cnpg.io/";
const MODELS = "@kubernetes-models/cloudnative-pg/postgresql.cnpg.io/v1";
const here = dirname(fileURLToPath(import.meta.url));
const [rendered, restPath] = process.argv.slice(2);

const documents = parseAllDocuments(readFileSync(rendered, "utf8")).map((d) => d.toJS());
const operatorObjects = documents.filter((d) => d?.apiVersion?.startsWith(OPERATOR_GROUP));
const rest = documents.filter((d) => d && !operatorObjects.includes(d));
// YAML 1.1, as kubernetes-validate reads it: "off" stays a string.
writeFileSync(restPath, rest.map((d) => stringify(d, { version: "1.1" })).join("---\n"));

const problems = [];
const where = (d) => `${d.kind}/${d.metadata?.name}`;
for (const object of operatorObjects) {
  if (object.apiVersion !== `${OPERATOR_GROUP}v1`) {
    problems.push(`${where(object)}: unknown version ${object.apiVersion}`);
    continue;
  }
  let model;
  try {
    model = (await import(`${MODELS}/${object.kind}`))[object.kind];
  } catch {
    problems.push(`${where(object)}: no such kind in ${MODELS}`);
    continue;
  }
  try {
    new model(object).validate();
  } catch (e) {
    problems.push(`${where(object)}: ${e.message}`);
  }
}

// One typed constant per object: tsc reports any field the type lacks.
const source = join(here, ".rendered.check.ts");
const kinds = [...new Set(operatorObjects.map((d) => d.kind))];
writeFileSync(
  source,
  kinds.map((k) => `import type { I${k} } from "${MODELS}/${k}";\n`).join("") +
    operatorObjects
      .map((d, i) => `// ${where(d)}\nexport const object${i}: I${d.kind} = ${JSON.stringify(d, null, 2)};\n`)
      .join(""),
);
const program = ts.createProgram([source], {
  strict: true,
  noEmit: true,
  skipLibCheck: true,
  module: ts.ModuleKind.NodeNext,
  moduleResolution: ts.ModuleResolutionKind.NodeNext,
  target: ts.ScriptTarget.ES2022,
});
for (const diagnostic of ts.getPreEmitDiagnostics(program)) {
  const text = ts.flattenDiagnosticMessageText(diagnostic.messageText, "\n");
  if (!diagnostic.file) {
    problems.push(text);
    continue;
  }
  const { line } = diagnostic.file.getLineAndCharacterOfPosition(diagnostic.start);
  const lines = diagnostic.file.text.split("\n");
  const owner = lines.slice(0, line + 1).findLast((l) => l.startsWith("// "));
  problems.push(`${owner?.slice(3)}: ${text.split("\n").at(-1)} (${lines[line].trim()})`);
}
rmSync(source);

if (problems.length) {
  console.error(problems.join("\n"));
  process.exit(1);
}
console.log(`${operatorObjects.length} CloudNativePG objects valid`);
