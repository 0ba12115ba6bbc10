// JSON Schema for editors and the spec reference page, both generated from the zod schema.
import { z } from "zod";
import { appSchema, platformSchema } from "./schema.js";

type JsonSchema = {
  type?: string | string[];
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

export function jsonSchemas(): { platform: object; app: object } {
  const options = { io: "input", unrepresentable: "any", target: "draft-2020-12" } as const;
  return {
    platform: { title: "berth platform file", ...z.toJSONSchema(platformSchema, options) },
    app: { title: "berth app file", ...z.toJSONSchema(appSchema, options) },
  };
}

function typeOf(schema: JsonSchema): string {
  if (schema.const !== undefined) return JSON.stringify(schema.const);
  if (schema.enum) return schema.enum.map((v) => JSON.stringify(v)).join(" \\| ");
  const variants = schema.anyOf ?? schema.oneOf;
  if (variants) return variants.map(typeOf).join(" or ");
  if (Array.isArray(schema.type)) return schema.type.join(" or ");
  if (schema.type === "array") return `list of ${schema.items ? typeOf(schema.items) : "values"}`;
  if (schema.type === "object" && schema.additionalProperties && typeof schema.additionalProperties === "object") {
    return `mapping of name → ${typeOf(schema.additionalProperties)}`;
  }
  return schema.type ?? "value";
}

function rows(schema: JsonSchema, prefix: string, out: string[]): void {
  const variants = schema.anyOf ?? schema.oneOf;
  const objects = variants ? variants.filter((v) => v.properties) : schema.properties ? [schema] : [];
  for (const object of objects) {
    for (const [key, child] of Object.entries(object.properties ?? {})) {
      const path = prefix === "" ? key : `${prefix}.${key}`;
      const isRequired = object.required?.includes(key) && child.default === undefined;
      const fallback = child.default === undefined ? "" : `\`${JSON.stringify(child.default)}\``;
      out.push(`| \`${path}\` | ${typeOf(child)} | ${isRequired ? "yes" : ""} | ${fallback} | ${child.description ?? ""} |`);
      rows(child, path, out);
      if (child.type === "object" && child.additionalProperties && typeof child.additionalProperties === "object") {
        rows(child.additionalProperties, `${path}.<name>`, out);
      }
      if (child.type === "array" && child.items) rows(child.items, `${path}[]`, out);
    }
  }
}

/** Markdown reference of every field, its type, default and description. */
export function specReference(): string {
  const { platform, app } = jsonSchemas();
  const table = (schema: object) => {
    const out = ["| field | type | required | default | description |", "|---|---|---|---|---|"];
    rows(schema as JsonSchema, "", out);
    return out.join("\n");
  };
  return [
    "# Spec reference",
    "",
    "Generated from the schema by `berth schema --out schema/ --docs docs/spec-reference.md`; do not edit by hand.",
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
