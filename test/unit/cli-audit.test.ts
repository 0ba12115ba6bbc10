// Mutations made with the CLI on the server itself (no berthd in between) land in the same
// append-only audit log as the API's: the real CLI as a child process on the reference spec,
// a fresh state directory and key file; `berth audit` reads them back.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { test } from "node:test";
import type { AuditEntry } from "../../src/state/access.js";

const REPO = fileURLToPath(new URL("../..", import.meta.url));
const SPEC = join(REPO, "examples", "reference-platform");

function berth(env: Record<string, string>, ...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ["--import", "tsx", "src/cli/main.ts", ...args], { cwd: REPO, timeout: 60_000, env: { ...process.env, ...env } }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === "number" ? error.code : -1) : 0, stdout, stderr });
    });
  });
}

test("local tokens and secrets commands are audited: actor cli:USER, source local, ok or refused", async () => {
  const stateDir = await mkdtemp(join(tmpdir(), "berth-cli-audit-"));
  const keyDir = await mkdtemp(join(tmpdir(), "berth-cli-audit-key-"));
  const env = { BERTH_SPEC: SPEC, BERTH_STATE_DIR: stateDir, BERTH_SECRETS_KEY: join(keyDir, "secrets.key"), BERTH_ACTOR: "cli:auditor" };

  const created = await berth(env, "tokens", "create", "ci-paiss", "--app", "paiss", "--json");
  assert.equal(created.code, 0, created.stderr);
  const tokenId = (JSON.parse(created.stdout) as { id: string }).id;
  const refused = await berth(env, "tokens", "create", "nobody", "--app", "nosuch");
  assert.equal(refused.code, 66, refused.stderr);
  const revoked = await berth(env, "tokens", "revoke", tokenId);
  assert.equal(revoked.code, 0, revoked.stderr);
  const set = await berth(env, "secrets", "set", "paiss", "--env", "staging", "API_KEY=not-in-the-log");
  assert.equal(set.code, 0, set.stderr);
  const unsetMissing = await berth(env, "secrets", "unset", "paiss", "--env", "staging", "NOT_SET");
  assert.equal(unsetMissing.code, 66, unsetMissing.stderr);

  const audit = await berth(env, "audit", "--json");
  assert.equal(audit.code, 0, audit.stderr);
  const entries = (JSON.parse(audit.stdout) as AuditEntry[]).reverse().map((e) => [e.actor, e.operation, e.target, e.source, e.status, e.result, e.tokenId]);
  assert.deepEqual(entries, [
    ["cli:auditor", "createToken", `token:${tokenId}`, "local", 200, "ok", null],
    ["cli:auditor", "createToken", "platform", "local", 404, "refused", null],
    ["cli:auditor", "revokeToken", `token:${tokenId}`, "local", 200, "ok", null],
    ["cli:auditor", "setSecret", "paiss/staging", "local", 200, "ok", null],
    ["cli:auditor", "unsetSecret", "paiss/staging", "local", 404, "refused", null],
  ]);
  assert.ok(!audit.stdout.includes("not-in-the-log"), "no secret value in the audit log");
});
