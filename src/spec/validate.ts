// Pure validation of a whole spec (platform file + app files): every problem at once,
// each with its position. Nothing here reads files: callers pass the texts in.
import { LineCounter, parseDocument } from "yaml";
import type { z } from "zod";
import { checkSpec, type HostLimits } from "./cross.js";
import {
  describeValue,
  didYouMean,
  issueAt,
  valueAt,
  type ParsedFile,
  type PathSegment,
  type SpecIssue,
} from "./issues.js";
import { appSchema, platformSchema, type AppSpec, type PlatformSpec } from "./schema.js";

export interface SourceText {
  /** Path shown in messages, relative to the spec directory (e.g. `apps/paiss.yaml`). */
  file: string;
  text: string;
}

export interface SpecFiles {
  platform: SourceText;
  apps: SourceText[];
}

export interface LoadedApp {
  file: string;
  spec: AppSpec;
}

export interface Spec {
  platform: PlatformSpec;
  apps: LoadedApp[];
}

export type SpecResult = { ok: true; spec: Spec } | { ok: false; issues: SpecIssue[] };

export function parseYaml(source: SourceText): { parsed: ParsedFile; issues: SpecIssue[] } {
  const lines = new LineCounter();
  const doc = parseDocument(source.text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  const parsed: ParsedFile = { file: source.file, doc, lines };
  const issues = doc.errors.map((error) => {
    const { line, col } = lines.linePos(error.pos[0]);
    const message = error.message.split("\n")[0]!.replace(/ at line \d+, column \d+:?$/, "");
    return { file: source.file, line, column: col, path: "", message: `invalid YAML: ${message}` };
  });
  return { parsed, issues };
}

/** The zod shape (or nested schema) at a path, to list the known keys of a mapping. */
function schemaAt(schema: z.ZodType, path: readonly PathSegment[]): z.ZodType[] {
  let current: z.ZodType[] = [schema];
  for (const segment of [...path, null]) {
    const next: z.ZodType[] = [];
    const queue = [...current];
    while (queue.length > 0) {
      const def = (queue.pop() as unknown as { _zod: { def: Record<string, unknown> } })._zod.def;
      switch (def.type) {
        case "optional":
        case "default":
        case "prefault":
        case "nullable":
          queue.push(def.innerType as z.ZodType);
          break;
        case "pipe":
          queue.push(def.in as z.ZodType);
          break;
        case "union":
          queue.push(...(def.options as z.ZodType[]));
          break;
        default:
          if (segment === null) next.push({ _zod: { def } } as unknown as z.ZodType);
          else if (def.type === "object" && typeof segment === "string") {
            const child = (def.shape as Record<string, z.ZodType>)[segment];
            if (child) next.push(child);
          } else if (def.type === "record") next.push(def.valueType as z.ZodType);
          else if (def.type === "array" && typeof segment === "number") next.push(def.element as z.ZodType);
      }
    }
    current = next;
  }
  return current;
}

function knownKeys(schema: z.ZodType, path: readonly PathSegment[]): string[] {
  const keys = new Set<string>();
  for (const found of schemaAt(schema, path)) {
    const def = (found as unknown as { _zod: { def: { type: string; shape?: object } } })._zod.def;
    if (def.type === "object" && def.shape) for (const key of Object.keys(def.shape)) keys.add(key);
  }
  return [...keys];
}

/** zod's own wording is replaced by what the user should write, for the cases our schema leaves unsaid. */
function expectedFallback(issue: { code?: string; expected?: string; values?: unknown[]; minimum?: unknown; maximum?: unknown; origin?: string }): string {
  switch (issue.code) {
    case "invalid_type":
      return (
        { string: "a string", number: "a number", int: "a whole number", boolean: "true or false", array: "a list", object: "a mapping", record: "a mapping" }[
          issue.expected ?? ""
        ] ?? `a ${issue.expected}`
      );
    case "invalid_value":
      return `one of ${(issue.values ?? []).map((v) => String(v)).join(", ")}`;
    case "too_small":
      return issue.origin === "array" ? `at least ${String(issue.minimum)} item(s)` : `at least ${String(issue.minimum)}`;
    case "too_big":
      return issue.origin === "array" ? `at most ${String(issue.maximum)} item(s)` : `at most ${String(issue.maximum)}`;
    default:
      return "a valid value";
  }
}

type ZodIssue = z.core.$ZodIssue;

function collectIssues(
  file: ParsedFile,
  schema: z.ZodType,
  data: unknown,
  zodIssues: readonly ZodIssue[],
  prefix: readonly PathSegment[],
  out: SpecIssue[],
): void {
  for (const issue of zodIssues) {
    const path = [...prefix, ...(issue.path as PathSegment[])];
    const found = valueAt(data, path);
    if (issue.code === "unrecognized_keys") {
      const known = knownKeys(schema, path);
      for (const key of issue.keys) {
        out.push(issueAt(file, [...path, key], `unknown field${didYouMean(key, known)}`, true));
      }
    } else if (issue.code === "invalid_union" && issue.errors.length === 0 && "discriminator" in issue) {
      // A discriminated union with an unknown tag: point at the tag itself.
      const options = ((issue as { options?: unknown[] }).options ?? []).map(String);
      const tagPath = path.at(-1) === issue.discriminator ? path : [...path, String(issue.discriminator)];
      const tag = valueAt(data, tagPath);
      const hint = typeof tag === "string" ? didYouMean(tag, options) : "";
      out.push(issueAt(file, tagPath, `expected one of ${options.join(", ")}, got ${describeValue(tag)}${hint}`));
    } else if (issue.code === "invalid_union" && found !== null && typeof found === "object" && !Array.isArray(found)) {
      // A shorthand-or-mapping field given a mapping: the mapping branch's problems are the useful ones.
      const branch = issue.errors.find((errors) => !errors.some((e) => e.path.length === 0 && e.code === "invalid_type"));
      if (branch) collectIssues(file, schema, data, branch, path, out);
      else out.push(issueAt(file, path, `expected ${issue.message}, got ${describeValue(found)}`));
    } else if (issue.code === "invalid_value") {
      const options = issue.values.map(String);
      const hint = typeof found === "string" ? didYouMean(found, options) : "";
      out.push(issueAt(file, path, `expected ${issue.message}, got ${describeValue(found)}${hint}`));
    } else {
      out.push(issueAt(file, path, `expected ${issue.message}, got ${describeValue(found)}`));
    }
  }
}

function parseWith<T extends z.ZodType>(schema: T, file: ParsedFile, issues: SpecIssue[]): z.output<T> | undefined {
  const data: unknown = file.doc.toJS();
  const result = schema.safeParse(data, { error: (issue) => expectedFallback(issue as never) });
  if (result.success) return result.data;
  collectIssues(file, schema, data, result.error.issues, [], issues);
  return undefined;
}

/** Validate and normalise a whole spec. Reports every problem of every file at once. */
export function validateSpec(files: SpecFiles, host: HostLimits): SpecResult {
  const issues: SpecIssue[] = [];
  const platformFile = parseYaml(files.platform);
  issues.push(...platformFile.issues);
  const platform = platformFile.issues.length === 0 ? parseWith(platformSchema, platformFile.parsed, issues) : undefined;

  const apps: { file: ParsedFile; spec: AppSpec }[] = [];
  for (const source of files.apps) {
    const appFile = parseYaml(source);
    issues.push(...appFile.issues);
    if (appFile.issues.length > 0) continue;
    const spec = parseWith(appSchema, appFile.parsed, issues);
    if (spec) apps.push({ file: appFile.parsed, spec });
  }

  issues.push(...checkSpec({ file: platformFile.parsed, spec: platform }, apps, host));
  if (issues.length > 0 || !platform) return { ok: false, issues: sortIssues(issues) };
  return { ok: true, spec: { platform, apps: apps.map((app) => ({ file: app.file.file, spec: app.spec })) } };
}

function sortIssues(issues: SpecIssue[]): SpecIssue[] {
  return [...issues].sort((a, b) => a.file.localeCompare(b.file) || a.line - b.line || a.column - b.column);
}
