// The committed JSON Schemas (for editors) and spec reference (for people) must be what the
// schema generates now: a schema change without regenerating them fails here.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { jsonSchemas, specReference } from "../../src/spec/jsonschema.js";

const REPO = fileURLToPath(new URL("../..", import.meta.url));
const REGENERATE = "run npm run schema and commit schema/ and docs/";

/** The bytes `berth schema` writes. */
const asFile = (value: object) => JSON.stringify(value, null, 2) + "\n";

async function committed(path: string): Promise<string> {
  return readFile(`${REPO}/${path}`, "utf8").catch(() => assert.fail(`${path} is missing: ${REGENERATE}`));
}

test("schema/platform.schema.json is what the schema generates", async () => {
  const expected = asFile(jsonSchemas().platform);
  assert.ok((await committed("schema/platform.schema.json")) === expected, `schema/platform.schema.json is out of date: ${REGENERATE}`);
});

test("schema/app.schema.json is what the schema generates", async () => {
  const expected = asFile(jsonSchemas().app);
  assert.ok((await committed("schema/app.schema.json")) === expected, `schema/app.schema.json is out of date: ${REGENERATE}`);
});

test("docs/spec-reference.md is what the schema generates", async () => {
  assert.ok((await committed("docs/spec-reference.md")) === specReference(), `docs/spec-reference.md is out of date: ${REGENERATE}`);
});

test("the JSON Schemas are draft 2020-12 with a title, and refuse unknown top-level fields", () => {
  for (const [which, schema] of Object.entries(jsonSchemas())) {
    const s = schema as { $schema?: string; title?: string; additionalProperties?: unknown; required?: string[] };
    assert.equal(s.$schema, "https://json-schema.org/draft/2020-12/schema", which);
    assert.equal(s.title, `berth ${which} file`);
    assert.equal(s.additionalProperties, false, which);
  }
  assert.deepEqual((jsonSchemas().app as { required?: string[] }).required, ["name", "components", "routes", "environments"]);
  assert.deepEqual((jsonSchemas().platform as { required?: string[] }).required, ["name"]);
});

test("the reference shows defaults as users write them and one row per field of each tls mode", () => {
  const reference = specReference();
  assert.ok(reference.includes("| `defaults.resources.memory` | memory size |  | `\"256M\"` |"), "memory default as written");
  assert.ok(reference.includes("| `tls.mode` | \"self-signed\" \\| \"acme\" \\| \"manual\" \\| \"off\" | yes |"), "tls modes in one row");
  assert.ok(reference.includes("| `tls.email` | string | yes |  | With mode `\"acme\"`: "), "acme's fields say they belong to acme");
  assert.ok(reference.includes("# yaml-language-server: $schema="), "editor hint");
});
