// Shared by the proxy tests: plans made by the real planner from spec texts, and a small
// reader of nginx's configuration syntax so properties can be checked on the rendered tree.
import { join } from "node:path";
import { names } from "../../src/plan/names.js";
import { planPlatform } from "../../src/plan/plan.js";
import type { PlatformPlan } from "../../src/plan/types.js";
import type { ProxyObserved } from "../../src/proxy/render.js";
import { readSpecFiles } from "../../src/spec/load.js";
import { validateSpec, type SpecFiles } from "../../src/spec/validate.js";

const HOST = { cpus: 64, memoryBytes: 256 * 1024 ** 3 };

export function planFromTexts(platform: string, apps: Record<string, string>): PlatformPlan {
  const files: SpecFiles = {
    platform: { file: "platform.yaml", text: platform },
    apps: Object.entries(apps).map(([name, text]) => ({ file: `apps/${name}.yaml`, text })),
  };
  return planFrom(files, "/spec");
}

function planFrom(files: SpecFiles, root: string): PlatformPlan {
  const result = validateSpec(files, HOST);
  if (!result.ok) throw new Error(`invalid test spec:\n${result.issues.map((issue) => `${issue.file}:${issue.line} ${issue.path}: ${issue.message}`).join("\n")}`);
  return planPlatform(result.spec, { root });
}

export const REFERENCE_DIR = join(import.meta.dirname, "../../examples/reference-platform");

export async function referencePlan(): Promise<PlatformPlan> {
  const { root, files } = await readSpecFiles(REFERENCE_DIR);
  return planFrom(files, root);
}

/** Every replica of every component running (at made-up addresses), every environment with a certificate. */
export function everythingObserved(plan: PlatformPlan): ProxyObserved {
  const upstreams: Record<string, string[]> = {};
  const certificates: Record<string, boolean> = {};
  plan.environments.forEach((environment, e) => {
    certificates[`${environment.app}/${environment.env}`] = true;
    environment.components.forEach((component, k) => {
      upstreams[names.upstream(environment.app, environment.env, component.name)] = component.containers.map((_, c) => `172.30.${e}.${10 * k + c + 2}:${component.port}`);
    });
  });
  return { upstreams, certificates };
}

export interface Directive {
  name: string;
  args: string[];
  children?: Directive[];
}

/**
 * Parses nginx configuration text into directives and blocks (quotes and comments as nginx reads
 * them). The Lua of a `*_by_lua_block` is one argument, as the Lua module reads it.
 */
export function parseNginx(text: string): Directive[] {
  const tokens = tokenize(text);
  let position = 0;
  const parseBlock = (isNested: boolean): Directive[] => {
    const directives: Directive[] = [];
    let words: string[] = [];
    while (position < tokens.length) {
      const token = tokens[position++]!;
      if (token.kind === "word") words.push(token.text);
      else if (token.text === ";") {
        directives.push({ name: words[0]!, args: words.slice(1) });
        words = [];
      } else if (token.text === "{") {
        directives.push({ name: words[0]!, args: words.slice(1), children: parseBlock(true) });
        words = [];
      } else {
        if (!isNested) throw new Error("unbalanced '}'");
        return directives;
      }
    }
    if (isNested || words.length > 0) throw new Error("unexpected end of configuration");
    return directives;
  };
  return parseBlock(false);
}

type Token = { kind: "word" | "punctuation"; text: string };

function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  let statement = 0;
  while (i < text.length) {
    const ch = text[i]!;
    if (/\s/.test(ch)) i++;
    else if (ch === "#") while (i < text.length && text[i] !== "\n") i++;
    else if (ch === "{" && tokens[statement]?.text.endsWith("_by_lua_block")) {
      // Lua, up to the brace that closes the block: one word, ended like a directive.
      let depth = 1;
      const start = ++i;
      for (; depth > 0; i++) {
        if (i >= text.length) throw new Error("unterminated Lua block");
        if (text[i] === "{") depth++;
        else if (text[i] === "}") depth--;
      }
      tokens.push({ kind: "word", text: text.slice(start, i - 1).trim() }, { kind: "punctuation", text: ";" });
      statement = tokens.length;
    } else if (ch === ";" || ch === "{" || ch === "}") {
      tokens.push({ kind: "punctuation", text: ch });
      statement = tokens.length;
      i++;
    } else if (ch === '"' || ch === "'") {
      let value = "";
      i++;
      while (text[i] !== ch) {
        if (i >= text.length) throw new Error("unterminated string");
        if (text[i] === "\\" && `"'\\`.includes(text[i + 1]!)) i++;
        value += text[i++];
      }
      i++;
      tokens.push({ kind: "word", text: value });
    } else {
      let value = "";
      while (i < text.length && !/[\s;{}]/.test(text[i]!)) value += text[i++];
      tokens.push({ kind: "word", text: value });
    }
  }
  return tokens;
}

/** Every directive of the tree, depth first, with the chain of blocks around it. */
export function* walk(directives: Directive[], parents: Directive[] = []): Generator<{ directive: Directive; parents: Directive[] }> {
  for (const directive of directives) {
    yield { directive, parents };
    if (directive.children) yield* walk(directive.children, [...parents, directive]);
  }
}
