// Pure validation of a whole spec (platform file + app files): every problem at once,
// each with its position. Nothing here reads files: callers pass the texts in.
import { LineCounter, parseDocument, visit, type YAMLError } from "yaml";
import type { z } from "zod";
import { checkSpec, type HostLimits } from "./cross.js";
import {
  closest,
  describeValue,
  didYouMean,
  formatIssue,
  formatPath,
  issueAt,
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

/**
 * The flow collections (`{` or `[`) still open at `offset`, innermost last. A rough scanner
 * (quotes and comments only): it serves to point at an unclosed bracket, which the YAML
 * library reports only where it gave up, often lines later.
 */
function openBrackets(text: string, offset: number): { char: string; offset: number }[] {
  const open: { char: string; offset: number }[] = [];
  for (let i = 0; i < offset; i++) {
    const char = text[i]!;
    const before = text.slice(0, i).trimEnd().at(-1);
    if (char === "#" && (i === 0 || /\s/.test(text[i - 1]!))) {
      while (i < offset && text[i] !== "\n") i++;
    } else if ((char === '"' || char === "'") && (before === undefined || ":,[{-\n".includes(before) || text[i - 1] === "\n")) {
      for (i++; i < offset && text[i] !== char; i++) if (char === '"' && text[i] === "\\") i++;
    } else if (char === "{" || char === "[") open.push({ char, offset: i });
    else if ((char === "}" || char === "]") && open.length > 0) open.pop();
  }
  return open;
}

/** The YAML library's wording where it names its own API or reads badly; the rest is kept. */
function yamlMessage(error: YAMLError, text: string): string {
  switch (error.code) {
    case "DUPLICATE_KEY": {
      // The error marks only the key's first character; the key runs up to its ':'.
      const key = /^("[^"]*"|'[^']*'|[^:,{}[\]\n]*[^:,{}[\]\s])/.exec(text.slice(error.pos[0]))?.[1] ?? "";
      return `duplicate key ${JSON.stringify(key.replace(/^["']|["']$/g, ""))}; a key may appear only once in a mapping`;
    }
    case "MULTIPLE_DOCS":
      return "more than one document (a second '---'); a spec file holds one document";
    case "TAB_AS_INDENT":
      return "tabs are not allowed as indentation; indent with spaces";
    default: {
      const message = error.message.split("\n")[0]!.replace(/ at line \d+, column \d+:?$/, "");
      return message.charAt(0).toLowerCase() + message.slice(1);
    }
  }
}

export interface ParsedYaml {
  parsed: ParsedFile;
  /** The document as plain data; undefined when the YAML has errors. */
  data: unknown;
  issues: SpecIssue[];
}

export function parseYaml(source: SourceText): ParsedYaml {
  const lines = new LineCounter();
  const doc = parseDocument(source.text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  const parsed: ParsedFile = { file: source.file, doc, lines };
  const at = (offset: number, message: string): SpecIssue => {
    const { line, col } = lines.linePos(offset);
    return { file: source.file, line, column: col, path: "", message: `invalid YAML: ${message}` };
  };
  const issues: SpecIssue[] = [];
  const reported = new Set<number>();
  for (const error of doc.errors) {
    const flow = /^Flow (map|sequence) in block collection/.exec(error.message);
    if (error.code === "BAD_INDENT" && flow) {
      // Point at the bracket that was never closed, not where the library gave up.
      const [opening, closing] = flow[1] === "map" ? ["{", "}"] : ["[", "]"];
      const bracket = openBrackets(source.text, error.pos[0]).reverse().find((b) => b.char === opening && !reported.has(b.offset));
      if (bracket) {
        reported.add(bracket.offset);
        issues.push(at(bracket.offset, `"${opening}" is not closed; a flow ${flow[1] === "map" ? "mapping" : "sequence"} ends with "${closing}"`));
        continue;
      }
    }
    issues.push(at(error.pos[0], yamlMessage(error, source.text)));
  }
  if (issues.length > 0) return { parsed, data: undefined, issues };

  // An alias without its anchor is not a parse error to the YAML library; it throws later, in toJS.
  visit(doc, {
    Alias(_, alias) {
      if (alias.resolve(doc) === undefined) issues.push(at(alias.range?.[0] ?? 0, `alias *${alias.source} has no anchor &${alias.source} before it`));
    },
  });
  if (issues.length > 0) return { parsed, data: undefined, issues };
  try {
    return { parsed, data: doc.toJS(), issues };
  } catch (error) {
    // The library refuses documents that expand aliases beyond its limit (a "billion laughs" file).
    return { parsed, data: undefined, issues: [at(0, (error as Error).message)] };
  }
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

/** A problem the schema found, before it is placed in the file. */
interface Finding {
  path: PathSegment[];
  message: string;
  /** Point at the key rather than the value (unknown fields, bad names used as keys). */
  atKey?: boolean;
  /** A required field that is absent. */
  isMissing?: boolean;
  /** For an unknown key: the known field it is probably a misspelling of. */
  suggestion?: string;
}

/** Where a union of several mapping forms (like `source`) was given a mapping that fits none. */
interface UnionForms {
  path: readonly PathSegment[];
  /** The union's own words for its forms. */
  expected: string;
  /** Keys of the given mapping that the closest form accepts. */
  acceptedKeys: string[];
}

function isMapping(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

const samePath = (a: readonly PathSegment[], b: readonly PathSegment[]) => a.length === b.length && a.every((s, i) => s === b[i]);

/**
 * The value at `path`. A path that runs into a scalar stops there: a shorthand like
 * `health: /x` is expanded before it is checked, but the user wrote the scalar.
 */
function foundAt(data: unknown, path: readonly PathSegment[]): { path: PathSegment[]; value: unknown } {
  let current = data;
  for (let i = 0; i < path.length; i++) {
    if (current === undefined) return { path: [...path], value: undefined };
    if (current === null || typeof current !== "object") return { path: path.slice(0, i), value: current };
    current = (current as Record<PathSegment, unknown>)[path[i]!];
  }
  return { path: [...path], value: current };
}

function collectFindings(
  schema: z.ZodType,
  data: unknown,
  zodIssues: readonly ZodIssue[],
  prefix: readonly PathSegment[],
  out: Finding[],
  union?: UnionForms,
): void {
  for (const issue of zodIssues) {
    const path = [...prefix, ...(issue.path as PathSegment[])];
    if (issue.code === "unrecognized_keys") {
      const known = knownKeys(schema, path);
      const forms = union && samePath(union.path, path) ? union : undefined;
      for (const key of issue.keys) {
        if (forms && known.includes(key) && forms.acceptedKeys.length > 0) {
          // A key of another form of the union: the user mixed two forms.
          const others = forms.acceptedKeys.map((k) => JSON.stringify(k)).join(", ");
          out.push({ path: [...path, key], atKey: true, message: `cannot be used together with ${others}; expected ${forms.expected}` });
          continue;
        }
        const suggestion = closest(key, known);
        const hint =
          suggestion !== undefined ? `did you mean "${suggestion}"?` : forms ? `expected ${forms.expected}` : `known fields are ${known.join(", ")}`;
        out.push({ path: [...path, key], atKey: true, message: `unknown field; ${hint}`, ...(suggestion !== undefined ? { suggestion } : {}) });
      }
      continue;
    }
    if (issue.code === "invalid_key") {
      // A mapping key that is not a valid name (a component `Web`, a variable `my-var`).
      const expected = issue.issues[0]?.message ?? "a valid name";
      out.push({ path, atKey: true, message: `expected ${expected}, got ${JSON.stringify(String(path.at(-1)))}` });
      continue;
    }
    if (issue.code === "invalid_union" && issue.errors.length === 0 && "discriminator" in issue) {
      // A discriminated union with a missing or unknown tag: point at the tag itself.
      const options = ((issue as { options?: unknown[] }).options ?? []).map(String);
      const tagPath = path.at(-1) === issue.discriminator ? path : [...path, String(issue.discriminator)];
      const tag = foundAt(data, tagPath).value;
      if (tag === undefined) out.push({ path: tagPath, isMissing: true, message: `missing field; expected one of ${options.join(", ")}` });
      else {
        const hint = typeof tag === "string" ? didYouMean(tag, options) : "";
        out.push({ path: tagPath, message: `expected one of ${options.join(", ")}, got ${describeValue(tag)}${hint}` });
      }
      continue;
    }
    const found = foundAt(data, path);
    if (issue.code === "invalid_union" && isMapping(found.value) && found.path.length === path.length) {
      // A mapping given to a union: the problems of the mapping form that fits best are the useful ones.
      const forms = issue.errors.filter((errors) => !errors.some((e) => e.path.length === 0 && e.code === "invalid_type"));
      if (forms.length > 0) {
        const best = forms.reduce((a, b) => (b.length < a.length ? b : a));
        if (forms.length === 1) {
          collectFindings(schema, data, best, path, out);
          continue;
        }
        const unknown = new Set(best.flatMap((e) => (e.code === "unrecognized_keys" && e.path.length === 0 ? e.keys : [])));
        const acceptedKeys = Object.keys(found.value).filter((key) => !unknown.has(key));
        // With keys of no form at all, "missing git" would only guess which form was meant.
        const isMissing = (e: ZodIssue) => e.code === "invalid_type" && foundAt(data, [...path, ...(e.path as PathSegment[])]).value === undefined;
        const kept = unknown.size > 0 ? best.filter((e) => !isMissing(e)) : best;
        collectFindings(schema, data, kept, path, out, { path, expected: issue.message, acceptedKeys });
        continue;
      }
    }
    const params = issue.code === "custom" ? (issue.params as { detail?: unknown } | undefined) : undefined;
    const detail = typeof params?.detail === "string" ? ` (${params.detail})` : "";
    if (found.value === undefined) {
      out.push({ path: found.path, isMissing: true, message: `missing field; expected ${issue.message}` });
    } else if (issue.code === "invalid_value") {
      const hint = typeof found.value === "string" ? didYouMean(found.value, issue.values.map(String)) : "";
      out.push({ path: found.path, message: `expected ${issue.message}, got ${describeValue(found.value)}${hint}` });
    } else {
      const got = found.path.length === 0 && found.value === null ? "an empty file" : describeValue(found.value);
      out.push({ path: found.path, message: `expected ${issue.message}, got ${got}${detail}` });
    }
  }
}

function parseWith<T extends z.ZodType>(schema: T, file: ParsedFile, data: unknown, issues: SpecIssue[]): z.output<T> | undefined {
  const result = schema.safeParse(data, { error: (issue) => expectedFallback(issue as never) });
  if (result.success) return result.data;
  const findings: Finding[] = [];
  collectFindings(schema, data, result.error.issues, [], findings);
  // `enviroments:` is reported once, as a misspelling, not again as `environments` missing.
  const suggested = new Set(findings.flatMap((f) => (f.suggestion === undefined ? [] : [formatPath([...f.path.slice(0, -1), f.suggestion])])));
  const seen = new Set<string>();
  for (const finding of findings) {
    if (finding.isMissing && suggested.has(formatPath(finding.path))) continue;
    const issue = issueAt(file, finding.path, finding.message, finding.atKey);
    const key = formatIssue(issue);
    if (seen.has(key)) continue;
    seen.add(key);
    issues.push(issue);
  }
  return undefined;
}

/** Validate and normalise a whole spec. Reports every problem of every file at once. */
export function validateSpec(files: SpecFiles, host: HostLimits): SpecResult {
  const issues: SpecIssue[] = [];
  const platformFile = parseYaml(files.platform);
  issues.push(...platformFile.issues);
  const platform = platformFile.issues.length === 0 ? parseWith(platformSchema, platformFile.parsed, platformFile.data, issues) : undefined;

  const apps: { file: ParsedFile; spec: AppSpec }[] = [];
  for (const source of files.apps) {
    const appFile = parseYaml(source);
    issues.push(...appFile.issues);
    if (appFile.issues.length > 0) continue;
    const spec = parseWith(appSchema, appFile.parsed, appFile.data, issues);
    if (spec) apps.push({ file: appFile.parsed, spec });
  }

  // Cross-field checks see only the files that passed the schema: a file with schema problems
  // would otherwise add guesses on top of them.
  issues.push(...checkSpec({ file: platformFile.parsed, spec: platform }, apps, host));
  if (issues.length > 0 || !platform) return { ok: false, issues: sortIssues(issues) };
  return { ok: true, spec: { platform, apps: apps.map((app) => ({ file: app.file.file, spec: app.spec })) } };
}

function sortIssues(issues: SpecIssue[]): SpecIssue[] {
  return [...issues].sort(
    (a, b) => a.file.localeCompare(b.file) || a.line - b.line || a.column - b.column || a.path.localeCompare(b.path) || a.message.localeCompare(b.message),
  );
}
