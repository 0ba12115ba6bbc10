// Loading a spec from disk and validating it, for callers that just want a Spec or errors.
import { cpus, totalmem } from "node:os";
import { BerthError } from "../errors.js";
import { formatIssue } from "./issues.js";
import type { HostLimits } from "./cross.js";
import { readSpecFiles } from "./load.js";
import { validateSpec, type Spec } from "./validate.js";

export function thisHost(): HostLimits {
  return { cpus: cpus().length, memoryBytes: totalmem() };
}

export class SpecInvalidError extends BerthError {
  constructor(readonly lines: string[]) {
    super("SPEC_INVALID", `${lines.length} problem${lines.length === 1 ? "" : "s"} in the spec:\n${lines.join("\n")}`, "Fix them and run berth validate again.");
  }
}

/** Reads and validates the spec at `target`; throws SpecInvalidError listing every problem. */
export async function loadSpec(target: string, host: HostLimits = thisHost()): Promise<{ root: string; spec: Spec }> {
  const { root, files } = await readSpecFiles(target);
  const result = validateSpec(files, host);
  if (!result.ok) throw new SpecInvalidError(result.issues.map(formatIssue));
  return { root, spec: result.spec };
}
