// Tenant passwords: SCRAM verifiers computed client-side, and the file store (0600, atomic).
import assert from "node:assert/strict";
import { chmod, mkdtemp, readFile, readdir, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { FilePasswordStore, PASSWORD_FILE } from "../../src/database/passwords.js";
import { generatePassword, isVerifierOf, scramVerifier } from "../../src/database/scram.js";
import { BerthError } from "../../src/errors.js";

void describe("scram", () => {
  void it("makes a verifier in PostgreSQL's format that checks against its password only", () => {
    const verifier = scramVerifier("pencil", Buffer.from("0123456789abcdef"));
    assert.match(verifier, /^SCRAM-SHA-256\$4096:MDEyMzQ1Njc4OWFiY2RlZg==\$[A-Za-z0-9+/]{43}=:[A-Za-z0-9+/]{43}=$/);
    assert.equal(verifier, scramVerifier("pencil", Buffer.from("0123456789abcdef")), "same salt, same verifier");
    assert.ok(isVerifierOf(verifier, "pencil"));
    assert.ok(!isVerifierOf(verifier, "pencil2"));
    assert.ok(isVerifierOf(scramVerifier("pencil"), "pencil"), "random salt");
    assert.notEqual(scramVerifier("pencil"), scramVerifier("pencil"));
  });

  void it("checks a verifier made by PostgreSQL 15 itself", () => {
    // SET password_encryption = 'scram-sha-256'; CREATE ROLE t PASSWORD 'pencil'; SELECT rolpassword FROM pg_authid
    const fromServer = "SCRAM-SHA-256$4096:BVlQYK60HDRooUKhPUFFiw==$cNQum4rXWK2toO9AyIouNlMXpSWKztEKo5n7dFBAWmA=:LqYeesj0B94is8pdhGS5u5yJ6Zhci8+p0EbuSoszhsc=";
    assert.ok(isVerifierOf(fromServer, "pencil"));
    assert.ok(!isVerifierOf(fromServer, "Pencil"));
  });

  void it("does not take an md5 hash, a plaintext or no password for a match", () => {
    assert.ok(!isVerifierOf(null, "pencil"));
    assert.ok(!isVerifierOf("md5" + "0".repeat(32), "pencil"));
    assert.ok(!isVerifierOf("pencil", "pencil"));
  });

  void it("generates long URL-safe passwords, and refuses ones clients would hash differently", () => {
    const password = generatePassword();
    assert.match(password, /^[A-Za-z0-9_-]{43}$/);
    assert.notEqual(password, generatePassword());
    assert.throws(() => scramVerifier("pässword"), BerthError);
    assert.throws(() => scramVerifier("with space"), BerthError);
  });
});

void describe("FilePasswordStore", () => {
  const dirs: string[] = [];
  const tempDir = async () => {
    const dir = await mkdtemp(join(tmpdir(), "berth-passwords-"));
    dirs.push(dir);
    return dir;
  };
  after(async () => {
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  });

  void it("generates a password once and keeps it, in a 0600 file of a 0700 directory", async () => {
    const stateDir = join(await tempDir(), "state");
    const store = new FilePasswordStore(stateDir);
    const first = await store.passwordFor("a_production");
    assert.equal(await store.passwordFor("a_production"), first);
    assert.equal(await new FilePasswordStore(stateDir).passwordFor("a_production"), first, "kept across instances");
    assert.equal((await stat(store.file)).mode & 0o777, 0o600);
    assert.equal((await stat(stateDir)).mode & 0o777, 0o700);
    assert.deepEqual(JSON.parse(await readFile(join(stateDir, PASSWORD_FILE), "utf8")), { a_production: first });
  });

  void it("set replaces one role's password (rotation) and keeps the others", async () => {
    const dir = await tempDir();
    const store = new FilePasswordStore(dir);
    const kept = await store.passwordFor("b_production");
    const old = await store.passwordFor("a_production");
    await store.set("a_production", "new-password");
    assert.equal(await store.passwordFor("a_production"), "new-password");
    assert.equal(await new FilePasswordStore(dir).passwordFor("a_production"), "new-password", "saved");
    assert.equal(await store.passwordFor("b_production"), kept);
    await store.set("a_production", old);
    assert.deepEqual(JSON.parse(await readFile(store.file, "utf8")), { a_production: old, b_production: kept });
    assert.equal((await stat(store.file)).mode & 0o777, 0o600);
  });

  void it("loses no password when many are asked for at once, and leaves no temp file", async () => {
    const dir = await tempDir();
    const store = new FilePasswordStore(dir);
    const roles = Array.from({ length: 20 }, (_, i) => `app${i}_production`);
    const passwords = await Promise.all(roles.map((role) => store.passwordFor(role)));
    assert.equal(new Set(passwords).size, roles.length);
    const saved = JSON.parse(await readFile(store.file, "utf8")) as Record<string, string>;
    assert.deepEqual(roles.map((role) => saved[role]), passwords);
    assert.deepEqual(await readdir(dir), [PASSWORD_FILE]);
  });

  void it("forgets a role's password", async () => {
    const store = new FilePasswordStore(await tempDir());
    const kept = await store.passwordFor("a_production");
    await store.passwordFor("b_staging");
    await store.forget("b_staging");
    await store.forget("never_there");
    assert.deepEqual(JSON.parse(await readFile(store.file, "utf8")), { a_production: kept });
  });

  void it("tightens a file someone made readable", async () => {
    const store = new FilePasswordStore(await tempDir());
    await store.passwordFor("a_production");
    await chmod(store.file, 0o644);
    await store.passwordFor("a_production");
    assert.equal((await stat(store.file)).mode & 0o777, 0o600);
  });

  void it("refuses a damaged file without overwriting it or echoing it", async () => {
    const dir = await tempDir();
    const store = new FilePasswordStore(dir);
    await writeFile(store.file, '{"a_production": "s3cret-value", ', { mode: 0o600 });
    await assert.rejects(store.passwordFor("b_staging"), (error: unknown) => error instanceof BerthError && !error.message.includes("s3cret"));
    assert.equal(await readFile(store.file, "utf8"), '{"a_production": "s3cret-value", ');
    await writeFile(store.file, '["not", "an", "object"]');
    await assert.rejects(store.passwordFor("b_staging"), /not an object of role names to passwords/);
  });
});
