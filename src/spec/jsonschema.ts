// JSON Schema for editors and the spec reference page, both generated from the zod schema.
import { z } from "zod";
import { appSchema, NAME_PATTERN, platformSchema } from "./schema.js";

type JsonSchema = {
  type?: string | string[];
  title?: string;
  description?: string;
  default?: unknown;
  properties?: Record<string, JsonSchema>;
  required?: string[];
  items?: JsonSchema;
  additionalProperties?: JsonSchema | boolean;
  anyOf?: JsonSchema[];
  oneOf?: JsonSchema[];
  enum?: unknown[];
  const?: unknown;
  pattern?: string;
};

function withTitle(title: string, schema: Record<string, unknown>): object {
  const { $schema, ...rest } = schema;
  return { $schema, title, ...rest };
}

/** The JSON Schemas of the platform file and of an app file, as editors read them (input form: "256M", not bytes). */
export function jsonSchemas(): { platform: object; app: object } {
  const options = { io: "input", unrepresentable: "any", target: "draft-2020-12" } as const;
  return {
    platform: withTitle("berth platform file", z.toJSONSchema(platformSchema, options)),
    app: withTitle("berth app file", z.toJSONSchema(appSchema, options)),
  };
}

const WORDS: Record<string, string> = { object: "mapping", array: "list", integer: "integer", number: "number", string: "string", boolean: "boolean" };

/** The property every form of a union fixes to a constant (tls `mode`, backup target `type`), if any. */
function discriminator(variants: JsonSchema[]): string | undefined {
  const first = variants[0]?.properties ?? {};
  return Object.keys(first).find((key) => variants.every((variant) => variant.properties?.[key]?.const !== undefined));
}

function typeOf(schema: JsonSchema): string {
  if (schema.title) return schema.title;
  if (schema.const !== undefined) return JSON.stringify(schema.const);
  if (schema.enum) return schema.enum.map((v) => JSON.stringify(v)).join(" | ");
  const variants = schema.anyOf ?? schema.oneOf;
  if (variants) {
    const tag = discriminator(variants);
    if (tag) return `mapping by ${tag}`;
    const forms = variants.filter((variant) => variant.properties !== undefined).length;
    if (forms > 1 && forms === variants.length) return `mapping in one of ${forms} forms`;
    return [...new Set(variants.map(typeOf))].join(" or ");
  }
  if (Array.isArray(schema.type)) return schema.type.map((type) => WORDS[type] ?? type).join(" or ");
  if (schema.type === "array") return `list of ${schema.items ? typeOf(schema.items) : "values"}`;
  if (schema.type === "object" && schema.additionalProperties && typeof schema.additionalProperties === "object") {
    return `mapping of name → ${typeOf(schema.additionalProperties)}`;
  }
  return WORDS[schema.type ?? ""] ?? "value";
}

const isPlainObject = (value: unknown): value is object => value !== null && typeof value === "object" && !Array.isArray(value);
const cell = (text: string) => text.replaceAll("|", "\\|").replaceAll("\n", " ");
const code = (text: string) => (text === "" ? "" : `\`${text}\``);

/** A mapping whose fields get rows of their own shows its defaults there, not as one JSON blob. */
function hasOwnRows(schema: JsonSchema): boolean {
  return schema.properties !== undefined || (schema.anyOf ?? schema.oneOf ?? []).some((variant) => variant.properties !== undefined);
}

function row(path: string, type: string, isRequired: boolean, fallback: string, description: string): string {
  return `| ${code(cell(path))} | ${cell(type)} | ${isRequired ? "yes" : ""} | ${cell(fallback)} | ${cell(description)} |`;
}

function rows(schema: JsonSchema, prefix: string, out: string[], condition = ""): void {
  const join = (key: string) => (prefix === "" ? key : `${prefix}.${key}`);
  const variants = schema.anyOf ?? schema.oneOf;
  if (variants) {
    const tag = discriminator(variants);
    if (tag === undefined) {
      // A shorthand or a mapping (health, build, hsts): the mapping form's fields. With several
      // mapping forms (source), each row says which form it belongs to.
      const forms = variants.filter((variant) => variant.properties !== undefined);
      for (const form of forms) {
        const which = forms.length > 1 ? `In the form { ${Object.keys(form.properties!).join(", ")} }: ` : "";
        rows(form, prefix, out, condition + which);
      }
      return;
    }
    const values = variants.map((variant) => JSON.stringify(variant.properties![tag]!.const));
    const meanings = variants.map((variant) => {
      const description = variant.properties![tag]!.description;
      return description ? `${code(JSON.stringify(variant.properties![tag]!.const))}: ${description}` : "";
    });
    out.push(row(join(tag), values.join(" | "), true, "", meanings.filter(Boolean).join(" ")));
    for (const variant of variants) {
      const only = { ...variant, properties: Object.fromEntries(Object.entries(variant.properties ?? {}).filter(([key]) => key !== tag)) };
      rows(only, prefix, out, `With ${tag} ${code(JSON.stringify(variant.properties![tag]!.const))}: `);
    }
    return;
  }
  for (const [key, child] of Object.entries(schema.properties ?? {})) {
    const path = join(key);
    const isRequired = (schema.required?.includes(key) ?? false) && child.default === undefined;
    // `{}` only says "the fields below take their defaults"; they are shown on their own rows.
    const isEmptyMapping = isPlainObject(child.default) && Object.keys(child.default).length === 0;
    const fallback = child.default === undefined || (isEmptyMapping && hasOwnRows(child)) ? "" : code(JSON.stringify(child.default));
    out.push(row(path, typeOf(child), isRequired, fallback, condition + (child.description ?? "")));
    if (hasOwnRows(child)) rows(child, path, out, condition);
    if (child.type === "object" && child.additionalProperties && typeof child.additionalProperties === "object") {
      rows(child.additionalProperties, `${path}.<name>`, out, condition);
    }
    if (child.type === "array" && child.items) rows(child.items, `${path}[]`, out, condition);
  }
}

function table(schema: object): string {
  const out = ["| field | type | required | default | description |", "|---|---|---|---|---|"];
  rows(schema as JsonSchema, "", out);
  return out.join("\n");
}

/** Markdown reference of every field, its type, default and description. */
export function specReference(): string {
  const { platform, app } = jsonSchemas();
  return [
    "# Spec reference",
    "",
    "Generated from the schema (src/spec/schema.ts) by `npm run schema`; do not edit by hand.",
    "",
    "A spec is a directory holding `platform.yaml` and one file per app in `apps/`. Check it with `berth validate DIR`;",
    "see what it asks for with `berth plan DIR`.",
    "",
    "## Conventions",
    "",
    `- **Names** (platform, apps, components, environments, rate-limit classes) are lowercase letters, digits and \`-\`, start with a letter and do not end with \`-\` (\`${NAME_PATTERN.source}\`).`,
    "  An app environment gets the network `berth-{app}-{env}` and the database and role `{app}_{env}` (`-` becomes `_`);",
    "  a component gets the containers `{app}-{component}-{env}`, with `-1`, `-2`, … when it has replicas.",
    "- **memory size**: bytes, or a number with a unit `K`, `M`, `G` (binary): `256M`, `1.5G`.",
    "- **duration**: a number with a unit `ms`, `s`, `m`, `h`: `500ms`, `2s`, `1m30s`; a bare number is seconds.",
    "- **CPU count**: a number greater than 0: `0.5` is half a core.",
    "- `<name>` in a field path stands for a key you choose (a component, an environment, a variable).",
    "",
    "## Editor support",
    "",
    "The JSON Schemas in `schema/` give completion, hover docs and checks in editors that use the YAML language server",
    "(VS Code with the YAML extension, Neovim, Helix, JetBrains). Name the schema in the first line of a file:",
    "",
    "```yaml",
    "# yaml-language-server: $schema=../schema/platform.schema.json",
    "```",
    "",
    "and in an app file `# yaml-language-server: $schema=../../schema/app.schema.json` (paths are relative to the file).",
    "Cross-file checks (domains used twice, routes to unknown components, limits beyond the host) are berth's alone: run `berth validate`.",
    "",
    "## Platform file (`platform.yaml`)",
    "",
    (platform as JsonSchema).description ?? "",
    "",
    table(platform),
    "",
    "## App file (`apps/<app>.yaml`)",
    "",
    (app as JsonSchema).description ?? "",
    "",
    table(app),
    "",
  ].join("\n");
}
