// Mutations the CLI makes on this host itself, with no berthd in between, go to the same
// append-only audit log as the API's: the actor is cli:USER, the source "local", the status
// the one berthd would have answered, and the result ok, refused or failed.
import { existsSync } from "node:fs";
import { userInfo } from "node:os";
import { BerthError, ERROR_CODES } from "../errors.js";
import type { AuditEntry } from "../state/access.js";

/** Who runs this command, as releases and the audit log name them. */
export function localActor(): string {
  if (process.env.BERTH_ACTOR) return process.env.BERTH_ACTOR;
  try {
    return `cli:${userInfo().username}`;
  } catch {
    // A uid with no passwd entry (a container, say).
    return `cli:uid-${process.getuid?.() ?? "unknown"}`;
  }
}

/**
 * Runs `work` and appends what it was and how it ended to the audit log in `stateDir`; the
 * work's error, if any, is rethrown after. `target` may depend on the result (a new token's
 * id); a failed work is then recorded against "platform". The work is done whether or not the
 * entry could be written: a failure to write it is a warning, never the command's outcome (a
 * new token's value must still be printed).
 */
export async function audited<T>(stateDir: string, operation: string, target: string | ((result: T) => string), work: () => T | Promise<T>): Promise<T> {
  let result: T;
  try {
    result = await work();
  } catch (error) {
    const status = error instanceof BerthError ? ERROR_CODES[error.code].status : 500;
    await record(stateDir, { operation, target: typeof target === "string" ? target : "platform", status });
    throw error;
  }
  await record(stateDir, { operation, target: typeof target === "string" ? target : target(result), status: 200 });
  return result;
}

async function record(stateDir: string, entry: Pick<AuditEntry, "operation" | "target" | "status">): Promise<void> {
  // No state yet (a `down` of a platform never applied): nothing to log into, and none is made.
  if (!existsSync(stateDir)) return;
  try {
    // Loaded here, not at the CLI's start: commands that write nothing do not open SQLite.
    const { AccessStore, auditResult } = await import("../state/access.js");
    const access = new AccessStore(stateDir);
    try {
      access.audit({ actor: localActor(), tokenId: null, source: "local", ...entry, result: auditResult(entry.status) });
    } finally {
      access.close();
    }
  } catch (error) {
    process.stderr.write(`warning: could not write the audit log in ${stateDir}: ${(error as Error).message}\n`);
  }
}
