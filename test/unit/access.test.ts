// Tokens and the audit log in SQLite: only hashes are stored, revocation is immediate,
// scopes cover exactly their app or environment, and the audit table only grows.
import assert from "node:assert/strict";
import { mkdtemp, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import Database from "better-sqlite3";
import { AccessStore, scopeAllows, TOKEN_PATTERN } from "../../src/state/access.js";
import { SharedLock } from "../../src/daemon/control.js";

describe("access store", () => {
  test("a token's value is returned once; the database holds only its hash", async () => {
    const dir = await mkdtemp(join(tmpdir(), "berth-access-"));
    const access = new AccessStore(dir);
    const { token, value } = access.createToken("ci", { kind: "app", app: "shop" }, "test");
    assert.match(value, TOKEN_PATTERN);
    assert.equal(access.authenticate(value)?.id, token.id);
    access.close();
    const raw = await readFile(join(dir, "berth.db"));
    // The secret is everything after "berth_<id>_" (base64url, which may itself hold "_").
    const secret = value.slice(`berth_${token.id}_`.length);
    assert.equal(secret.length, 43);
    assert.ok(!raw.includes(Buffer.from(secret)), "the secret part is not in the file");
  });

  test("unknown, malformed, tampered and revoked tokens do not authenticate", async () => {
    const access = new AccessStore(await mkdtemp(join(tmpdir(), "berth-access-")));
    const { token, value } = access.createToken("admin", { kind: "admin" }, "test");
    const flipped = value.slice(0, -1) + (value.endsWith("a") ? "b" : "a");
    for (const bad of ["", "berth", value + "x", flipped, `berth_${"0".repeat(12)}_${"a".repeat(43)}`]) assert.equal(access.authenticate(bad), undefined, bad);
    access.revokeToken(token.id);
    assert.equal(access.authenticate(value), undefined);
    assert.ok(access.token(token.id)?.revokedAt);
    assert.throws(() => access.revokeToken("ffffffffffff"), /no token ffffffffffff/);
  });

  test("scopes: admin everything; app its environments; environment only itself", () => {
    const app = { kind: "app", app: "shop" } as const;
    const env = { kind: "environment", app: "shop", env: "staging" } as const;
    assert.ok(scopeAllows({ kind: "admin" }));
    assert.ok(scopeAllows(app, "shop", "production") && scopeAllows(app, "shop"));
    assert.ok(!scopeAllows(app, "blog", "production") && !scopeAllows(app));
    assert.ok(scopeAllows(env, "shop", "staging"));
    assert.ok(!scopeAllows(env, "shop", "production") && !scopeAllows(env, "shop") && !scopeAllows(env, "blog", "staging"));
  });

  test("the audit log pages newest first by cursor, filters by app and environment, and refuses changes", async () => {
    const dir = await mkdtemp(join(tmpdir(), "berth-access-"));
    const access = new AccessStore(dir);
    const entry = (target: string) => access.audit({ actor: "ci", tokenId: null, operation: "setSecret", target, source: "127.0.0.1", status: 200, result: "ok" });
    for (const target of ["shop/staging", "shop/production", "shop_x/staging", "blog/production", "shop", "token:abc"]) entry(target);
    const first = access.auditLog({ limit: 4 });
    assert.deepEqual(first.entries.map((e) => e.target), ["token:abc", "shop", "blog/production", "shop_x/staging"]);
    const second = access.auditLog({ limit: 4, before: Number(first.next) });
    assert.deepEqual([second.entries.map((e) => e.target), second.next], [["shop/production", "shop/staging"], null]);
    assert.deepEqual(access.auditLog({ app: "shop", limit: 10 }).entries.map((e) => e.target), ["shop", "shop/production", "shop/staging"]);
    assert.deepEqual(access.auditLog({ app: "shop", env: "staging", limit: 10 }).entries.map((e) => e.target), ["shop/staging"]);
    access.close();
    const db = new Database(join(dir, "berth.db"));
    assert.throws(() => db.prepare("update audit set actor = 'x'").run(), /append-only/);
    assert.throws(() => db.prepare("delete from audit where id = 1").run(), /append-only/);
    db.close();
  });
});

describe("shared lock", () => {
  test("shared holders run together; an exclusive one waits for them and runs alone", async () => {
    const lock = new SharedLock();
    const events: string[] = [];
    const hold = (name: string, ms: number) => async () => {
      events.push(`${name}+`);
      await new Promise((r) => setTimeout(r, ms));
      events.push(`${name}-`);
    };
    const a = lock.withShared(hold("a", 30));
    const b = lock.withShared(hold("b", 10));
    const x = lock.withExclusive(hold("x", 10));
    const c = lock.withShared(hold("c", 1));
    await Promise.all([a, b, x, c]);
    assert.deepEqual(events.slice(0, 2).sort(), ["a+", "b+"]);
    const xStart = events.indexOf("x+");
    assert.ok(xStart > events.indexOf("a-") && xStart > events.indexOf("b-"), events.join(" "));
    assert.equal(events[xStart + 1], "x-", "nothing runs beside the exclusive holder");
    assert.ok(events.indexOf("c+") > events.indexOf("x-"));
  });
});
