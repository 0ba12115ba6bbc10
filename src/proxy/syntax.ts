// nginx configuration text: nested blocks indented four spaces, and quoting that survives
// nginx's own parser. Only this file knows how nginx reads a string.

/**
 * A directive (with its `;`), a comment, "" for a blank line, or a nested block. A directive
 * may span lines ("\n"): each line is indented at the directive's depth.
 */
export type ConfigLine = string | ConfigBlock;

export interface ConfigBlock {
  head: string;
  body: ConfigLine[];
}

export function block(head: string, body: ConfigLine[]): ConfigBlock {
  return { head, body };
}

export function renderConfig(lines: readonly ConfigLine[]): string {
  return `${lines.flatMap((line) => lineTexts(line, 0)).join("\n")}\n`;
}

function lineTexts(line: ConfigLine, depth: number): string[] {
  const indent = "    ".repeat(depth);
  if (typeof line === "string") return line.split("\n").map((text) => (text === "" ? "" : `${indent}${text}`));
  return [`${indent}${line.head} {`, ...line.body.flatMap((child) => lineTexts(child, depth + 1)), `${indent}}`];
}

/**
 * A double-quoted string for a place nginx does not expand variables in (a location regex).
 * nginx's parser reads `\\`, `\"`, `\'`, `\t`, `\r`, `\n` as escapes and keeps any other
 * backslash as it is, so only a backslash before one of those (or at the end, where it would
 * eat the closing quote) is doubled: `^/api\.v1` stays readable and reaches PCRE unchanged.
 */
export function quoted(text: string): string {
  return `"${text.replace(/\\(?=["'\\trn]|$)/g, "\\\\").replaceAll('"', '\\"')}"`;
}

/** Name of the variable nginx.conf defines (with `geo`) to hold a literal `$`. */
export const DOLLAR_VARIABLE = "berth_dollar";

/**
 * A double-quoted string for a place nginx expands variables in (add_header values). nginx has
 * no escape for `$` there: a CSP containing one would name an unknown variable and fail the
 * whole config, so each `$` becomes `${berth_dollar}`, a variable whose value is `$`.
 */
export function quotedText(text: string): string {
  return quoted(text).replaceAll("$", `\${${DOLLAR_VARIABLE}}`);
}

/** A path (a prefix location, a file): bare when nginx reads it as one word, else quoted. */
export function word(path: string): string {
  return /^[A-Za-z0-9/._~%!*+,:@=-]+$/.test(path) ? path : quoted(path);
}
