// Spec problems as users read them: file:line:column, the field path, what was expected
// and what was found. Locating a path in a YAML document lives here too.
import { isMap, isScalar, isSeq, LineCounter, type Document, type Node } from "yaml";

export type PathSegment = string | number;

export interface SpecIssue {
  file: string;
  line: number;
  column: number;
  /** Field path like `components.backend.port` or `routes[1].to`; empty for the whole file. */
  path: string;
  message: string;
}

/** A parsed spec file: its display path, its YAML document and a line counter for positions. */
export interface ParsedFile {
  file: string;
  doc: Document.Parsed;
  lines: LineCounter;
}

export function formatPath(path: readonly PathSegment[]): string {
  let out = "";
  for (const segment of path) {
    if (typeof segment === "number") out += `[${segment}]`;
    else if (/^[A-Za-z_][\w-]*$/.test(segment)) out += out === "" ? segment : `.${segment}`;
    else out += `[${JSON.stringify(segment)}]`;
  }
  return out;
}

export function formatIssue(issue: SpecIssue): string {
  const where = `${issue.file}:${issue.line}:${issue.column}`;
  return issue.path === "" ? `${where} ${issue.message}` : `${where} ${issue.path}: ${issue.message}`;
}

/** How a found value is named in messages: strings quoted, containers by kind. */
export function describeValue(value: unknown): string {
  if (value === undefined) return "nothing";
  // YAML reads `key:` with nothing after it as null; users think of it as empty, not as null.
  if (value === null) return "an empty value";
  if (typeof value === "string") return JSON.stringify(value);
  if (Array.isArray(value)) return value.length === 0 ? "an empty list" : "a list";
  if (typeof value === "object") return Object.keys(value).length === 0 ? "an empty mapping" : "a mapping";
  return String(value);
}

/** `key:` with nothing after it: the value has no text of its own to point at. */
function isEmptyScalar(node: unknown): boolean {
  return isScalar(node) && node.value === null && node.source === "";
}

/**
 * The node at `path`. A path that does not exist (a missing field) is reported at the key
 * naming the mapping it is missing from, or at the mapping itself when it has no key (a list
 * item, the file). A path that runs into a scalar (a shorthand like `health: /x`) stops there.
 * With `atKey`, the last segment's key is returned instead of its value (unknown fields).
 */
export function nodeAt(doc: Document.Parsed, path: readonly PathSegment[], atKey = false): Node | null {
  let node: unknown = doc.contents;
  let key: Node | null = null;
  for (let i = 0; i < path.length; i++) {
    const segment = path[i]!;
    if (isMap(node)) {
      const pair = node.items.find((item) => isScalar(item.key) && String(item.key.value) === String(segment));
      if (!pair) return key ?? (node as Node);
      const isLast = i === path.length - 1;
      if ((isLast && atKey) || pair.value === null || pair.value === undefined || isEmptyScalar(pair.value)) return pair.key as Node;
      key = pair.key as Node;
      node = pair.value;
    } else if (isSeq(node) && typeof segment === "number") {
      const item = node.items[segment];
      if (item === undefined || item === null) return node;
      key = null;
      node = item;
    } else {
      return (node as Node | null) ?? null;
    }
  }
  return (node as Node | null) ?? null;
}

export function issueAt(file: ParsedFile, path: readonly PathSegment[], message: string, atKey = false): SpecIssue {
  const node = nodeAt(file.doc, path, atKey);
  const offset = node?.range?.[0] ?? 0;
  const { line, col } = file.lines.linePos(offset);
  return { file: file.file, line, column: col, path: formatPath(path), message };
}

/** Edit distance counting a swap of two neighbours as one edit ("prot" → "port"). */
export function editDistance(a: string, b: string): number {
  const rows = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min(rows[i - 1]![j]! + 1, rows[i]![j - 1]! + 1, rows[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) best = Math.min(best, rows[i - 2]![j - 2]! + 1);
      rows[i]![j] = best;
    }
  }
  return rows[a.length]![b.length]!;
}

/** The closest candidate within a typo's distance, or undefined. */
export function closest(word: string, candidates: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  const limit = Math.max(1, Math.floor(word.length / 3));
  for (const candidate of candidates) {
    const distance = editDistance(word.toLowerCase(), candidate.toLowerCase());
    if (distance < bestDistance && distance <= limit) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best;
}

export function didYouMean(word: string, candidates: Iterable<string>): string {
  const suggestion = closest(word, candidates);
  return suggestion === undefined ? "" : `; did you mean "${suggestion}"?`;
}
