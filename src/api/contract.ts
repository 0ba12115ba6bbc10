// The API contract: api/openapi.yaml, loaded once. From it come the routes (method + path
// template → operation), and validators for each operation's parameters, request body and
// responses. The server checks every request and every response against these.
import { Ajv2020, type ErrorObject, type ValidateFunction } from "ajv/dist/2020.js";
import addFormatsModule from "ajv-formats";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

// ajv-formats is CommonJS with a default export.
const addFormats = addFormatsModule as unknown as (ajv: Ajv2020) => Ajv2020;

export const CONTRACT_PATH = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "api", "openapi.yaml");

type Json = Record<string, unknown>;

export interface FieldError {
  path: string;
  message: string;
}

export interface Operation {
  id: string;
  method: string;
  template: string;
  /** Whether it changes state (recorded in the audit log). */
  isMutation: boolean;
  match: (path: string) => Record<string, string> | undefined;
  params: ValidateFunction;
  query: ValidateFunction;
  /** Media types the request body may have; empty when the operation takes none. */
  bodyTypes: string[];
  isBodyRequired: boolean;
  body?: ValidateFunction;
  responses: Map<string, { mediaType: string; validate?: ValidateFunction }>;
}

export interface Contract {
  document: Json;
  operations: Operation[];
  route(method: string, path: string): { operation: Operation; params: Record<string, string> } | { allowed: string[] } | undefined;
}

const METHODS = ["get", "put", "post", "delete", "patch"];

/** `#/components/...` refers inside the document; compiled schemas refer to it by id. */
function rebaseRefs(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(rebaseRefs);
  if (value === null || typeof value !== "object") return value;
  const out: Json = {};
  for (const [key, inner] of Object.entries(value)) out[key] = key === "$ref" && typeof inner === "string" && inner.startsWith("#/") ? `openapi${inner}` : rebaseRefs(inner);
  return out;
}

function resolve(document: Json, node: Json): Json {
  const ref = node.$ref;
  if (typeof ref !== "string") return node;
  let target: unknown = document;
  for (const part of ref.replace(/^(openapi)?#\//, "").split("/")) target = (target as Json)[part.replace(/~1/g, "/").replace(/~0/g, "~")];
  return target as Json;
}

/** Error paths as a user reads them: body.images.web, query.lines, path.app. */
export function fieldErrors(where: string, errors: ErrorObject[] | null | undefined): FieldError[] {
  return (errors ?? []).map((error) => {
    const segments = error.instancePath.split("/").slice(1).map((s) => s.replace(/~1/g, "/").replace(/~0/g, "~"));
    if (error.keyword === "additionalProperties" || error.keyword === "unevaluatedProperties") {
      const extra = (error.params as { additionalProperty?: string; unevaluatedProperty?: string });
      segments.push(extra.additionalProperty ?? extra.unevaluatedProperty ?? "?");
      return { path: [where, ...segments].join("."), message: "is not a known field" };
    }
    if (error.keyword === "required") {
      segments.push((error.params as { missingProperty: string }).missingProperty);
      return { path: [where, ...segments].join("."), message: "is required" };
    }
    return { path: [where, ...segments].join("."), message: error.message ?? error.keyword };
  });
}

function objectSchema(parameters: Json[]): Json {
  const properties: Json = {};
  const required: string[] = [];
  for (const parameter of parameters) {
    properties[parameter.name as string] = parameter.schema;
    if (parameter.required) required.push(parameter.name as string);
  }
  return { type: "object", properties, required, additionalProperties: false };
}

/** The contract document, parsed from its YAML (the parser is loaded only here). */
export function readContractDocument(path = CONTRACT_PATH): Json {
  const { parse } = createRequire(import.meta.url)("yaml") as { parse: (text: string) => unknown };
  return parse(readFileSync(path, "utf8")) as Json;
}

/**
 * A validator compiled on its first call: berthd answers few of the contract's operations
 * while it idles, and each compiled validator is code it would otherwise carry.
 */
function lazy(compile: () => ValidateFunction): ValidateFunction {
  let compiled: ValidateFunction | undefined;
  const validate = ((data: unknown) => {
    compiled ??= compile();
    const isValid = compiled(data);
    validate.errors = compiled.errors;
    return isValid;
  }) as ValidateFunction;
  return validate;
}

export function loadContract(path = CONTRACT_PATH): Contract {
  return compileContract(readContractDocument(path));
}

export function compileContract(document: Json): Contract {
  const rebased = rebaseRefs(document) as Json;
  const strictAjv = () => {
    const ajv = new Ajv2020({ allErrors: true, strict: false, validateFormats: true });
    addFormats(ajv);
    ajv.addSchema({ ...rebased, $id: "openapi" });
    return ajv;
  };
  const bodies = strictAjv();
  // Path and query values arrive as strings: this instance coerces them to the declared types.
  const parameters = new Ajv2020({ allErrors: true, strict: false, coerceTypes: true, useDefaults: true });
  addFormats(parameters);
  parameters.addSchema({ ...rebased, $id: "openapi" });

  const operations: Operation[] = [];
  for (const [template, item] of Object.entries(rebased.paths as Json)) {
    const pathItem = item as Json;
    const shared = ((pathItem.parameters as Json[] | undefined) ?? []).map((p) => resolve(rebased, p));
    const names: string[] = [];
    const pattern = new RegExp(
      "^" + template.replace(/[.*+?^$()|[\]\\]/g, "\\$&").replace(/\{(\w+)\}/g, (_, name: string) => (names.push(name), "([^/]+)")) + "$",
    );
    for (const method of METHODS) {
      const op = pathItem[method] as Json | undefined;
      if (!op) continue;
      const all = [...shared, ...((op.parameters as Json[] | undefined) ?? []).map((p) => resolve(rebased, p))];
      const rebasedAll = all.map((p) => rebaseRefs(p) as Json);
      const requestBody = op.requestBody ? resolve(rebased, op.requestBody as Json) : undefined;
      const content = (requestBody?.content as Json | undefined) ?? {};
      const json = content["application/json"] as Json | undefined;
      const responses = new Map<string, { mediaType: string; validate?: ValidateFunction }>();
      for (const [status, response] of Object.entries(op.responses as Json)) {
        const resolved = resolve(rebased, response as Json);
        const [mediaType, media] = Object.entries((resolved.content as Json | undefined) ?? {})[0] ?? [];
        const schema = (media as Json | undefined)?.schema as Json | undefined;
        const isJson = mediaType !== undefined && /json$/.test(mediaType);
        responses.set(status, { mediaType: mediaType ?? "", ...(isJson && schema ? { validate: lazy(() => bodies.compile(schema)) } : {}) });
      }
      operations.push({
        id: op.operationId as string,
        method: method.toUpperCase(),
        template,
        isMutation: method !== "get",
        match: (path) => {
          const found = pattern.exec(path);
          if (!found) return undefined;
          const params: Record<string, string> = {};
          names.forEach((name, i) => {
            let value = found[i + 1]!;
            try {
              value = decodeURIComponent(value);
            } catch {
              // Left encoded: the parameter's pattern refuses it.
            }
            params[name] = value;
          });
          return params;
        },
        params: lazy(() => parameters.compile(objectSchema(rebasedAll.filter((p) => p.in === "path")))),
        query: lazy(() => parameters.compile(objectSchema(rebasedAll.filter((p) => p.in === "query")))),
        bodyTypes: Object.keys(content),
        isBodyRequired: requestBody?.required === true,
        ...(json?.schema ? { body: lazy(() => bodies.compile(json.schema as Json)) } : {}),
        responses,
      });
    }
  }
  return {
    document,
    operations,
    route(method, path) {
      const candidates = operations.map((operation) => ({ operation, params: operation.match(path) })).filter((c) => c.params !== undefined);
      if (candidates.length === 0) return undefined;
      const hit = candidates.find((c) => c.operation.method === method);
      return hit ? { operation: hit.operation, params: hit.params! } : { allowed: candidates.map((c) => c.operation.method) };
    },
  };
}
