// The secret store against a real SQLite file and a real key file in temp directories.
import { afterEach, beforeEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import Database from "better-sqlite3";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BerthError } from "../../src/errors.js";
import { Store } from "../../src/state/store.js";
import { KEY_FILE_ENV, readKeyRing, secretsKeyPath, withoutKeys, writeKeyRing } from "../../src/secrets/keys.js";
import { MAX_VALUE_BYTES, SecretStore } from "../../src/secrets/store.js";

let dir: string;
let stateDir: string;
let keyPath: string;
let store: SecretStore;

function db(): Database.Database {
  return new Database(join(stateDir, "berth.db"));
}

function rows(): { app: string; env: string; name: string; version: number; kek_version: number | null; ciphertext: Buffer | null; wrapped_key: Buffer | null }[] {
  const handle = db();
  try {
    return handle.prepare("select * from secret_versions order by id").all() as ReturnType<typeof rows>;
  } finally {
    handle.close();
  }
}

/** Asserts that `fn` throws a BerthError with this code whose message matches every pattern. */
function assertBerthError(fn: () => unknown, code: BerthError["code"], ...patterns: RegExp[]): BerthError {
  let caught: unknown;
  try {
    fn();
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof BerthError, `expected a BerthError, got ${String(caught)}`);
  assert.equal(caught.code, code, caught.message);
  for (const pattern of patterns) assert.match(caught.message, pattern);
  return caught;
}

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "berth-secrets-"));
  stateDir = join(dir, "state");
  keyPath = join(dir, "etc", "secrets.key");
  store = new SecretStore(stateDir, { keyPath });
});

afterEach(() => {
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("SecretStore", () => {
  test("set adds a version per call; list shows names, versions and dates, never values", () => {
    assert.equal(store.version("shop", "production"), 0);
    const first = store.setMany("shop", "production", { API_KEY: "value-one", TOKEN: "token-one" });
    assert.equal(first.version, 1);
    assert.deepEqual(
      first.changed.map((c) => [c.name, c.version, c.isDeleted, c.kekVersion]),
      [
        ["API_KEY", 1, false, 1],
        ["TOKEN", 1, false, 1],
      ],
    );
    const second = store.set("shop", "production", "API_KEY", "value-two");
    assert.equal(second.version, 2);
    assert.equal(store.version("shop", "production"), 2);
    assert.equal(store.version("shop", "staging"), 0, "other environments keep their own version");

    const list = store.list("shop", "production");
    assert.deepEqual(
      list.map((s) => [s.name, s.version]),
      [
        ["API_KEY", 2],
        ["TOKEN", 1],
      ],
    );
    for (const secret of list) {
      assert.deepEqual(Object.keys(secret).sort(), ["name", "updatedAt", "version"]);
      assert.match(secret.updatedAt, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    }
    assert.equal(JSON.stringify(list).includes("value-"), false);
    assert.deepEqual(store.values("shop", "production"), { API_KEY: "value-two", TOKEN: "token-one" });
    assert.deepEqual(store.values("shop", "staging"), {});
    assert.deepEqual(
      store.history("shop", "production", "API_KEY").map((v) => [v.version, v.isDeleted]),
      [
        [1, false],
        [2, false],
      ],
    );
  });

  test("the key file is created 0600 in a 0700 directory, outside the state directory", () => {
    store.set("shop", "production", "API_KEY", "x");
    assert.equal(statSync(keyPath).mode & 0o777, 0o600);
    assert.equal(statSync(join(dir, "etc")).mode & 0o777, 0o700);
    const ring = readKeyRing(keyPath)!;
    assert.equal(ring.current, 1);
    assert.equal(ring.keys.get(1)!.length, 32);
    assert.deepEqual(Object.keys(JSON.parse(readFileSync(keyPath, "utf8")) as object), ["current", "keys"]);
  });

  test("unset adds a deletion marker: gone from list and values, kept in history; the version moves", () => {
    store.setMany("shop", "production", { API_KEY: "a1", TOKEN: "t1" });
    const change = store.unset("shop", "production", "API_KEY");
    assert.deepEqual([change.name, change.version, change.isDeleted, change.kekVersion], ["API_KEY", 2, true, null]);
    assert.equal(store.version("shop", "production"), 2);
    assert.deepEqual(
      store.list("shop", "production").map((s) => s.name),
      ["TOKEN"],
    );
    assert.deepEqual(store.values("shop", "production"), { TOKEN: "t1" });
    // Setting it again continues its version history.
    assert.equal(store.set("shop", "production", "API_KEY", "a3").version, 3);
    assert.deepEqual(
      store.history("shop", "production", "API_KEY").map((v) => [v.version, v.isDeleted]),
      [
        [1, false],
        [2, true],
        [3, false],
      ],
    );
  });

  test("unset of a secret that is not set is refused, naming it, and changes nothing", () => {
    store.set("shop", "production", "TOKEN", "t1");
    assertBerthError(() => store.unsetMany("shop", "production", ["TOKEN", "NOPE"]), "NOT_FOUND", /shop\/production has no secret NOPE/);
    assert.equal(store.version("shop", "production"), 1);
    assert.deepEqual(store.values("shop", "production"), { TOKEN: "t1" });
  });

  test("values({ at }) gives the secrets as of an earlier secrets version (for rollbacks)", () => {
    store.set("shop", "production", "API_KEY", "a1"); // version 1
    store.set("shop", "production", "TOKEN", "t1"); // version 2
    store.set("shop", "production", "API_KEY", "a2"); // version 3
    store.unset("shop", "production", "TOKEN"); // version 4
    assert.deepEqual(store.values("shop", "production", { at: 0 }), {});
    assert.deepEqual(store.values("shop", "production", { at: 1 }), { API_KEY: "a1" });
    assert.deepEqual(store.values("shop", "production", { at: 2 }), { API_KEY: "a1", TOKEN: "t1" });
    assert.deepEqual(store.values("shop", "production", { at: 3 }), { API_KEY: "a2", TOKEN: "t1" });
    assert.deepEqual(store.values("shop", "production", { at: 4 }), { API_KEY: "a2" });
    assert.deepEqual(store.values("shop", "production"), { API_KEY: "a2" });
  });

  test("shares berth.db with the control-plane Store", () => {
    const control = new Store(stateDir);
    try {
      store.set("shop", "production", "API_KEY", "x");
      assert.deepEqual(control.releases("shop", "production"), []);
      const tables = (db().prepare("select name from sqlite_master where type = 'table' order by name").all() as { name: string }[]).map((t) => t.name);
      assert.ok(tables.includes("releases") && tables.includes("secret_versions"), tables.join(", "));
    } finally {
      control.close();
    }
  });

  describe("refuses bad input, naming the field, with nothing written", () => {
    const cases: [string, Record<string, string>, RegExp][] = [
      ["a lowercase name", { api_key: "x" }, /secret name "api_key": expected an environment variable name/],
      ["a name starting with a digit", { "1KEY": "x" }, /secret name "1KEY"/],
      ["a name with a dash", { "API-KEY": "x" }, /secret name "API-KEY"/],
      ["an empty name", { "": "x" }, /secret name is empty/],
      ["a name over 128 characters", { ["K".repeat(129)]: "x" }, /is 129 characters; the limit is 128/],
      ["the reserved DATABASE_URL", { DATABASE_URL: "postgres://x" }, /secret name DATABASE_URL is reserved/],
      ["a value over 64 KiB", { BIG: "é".repeat(MAX_VALUE_BYTES / 2) + "x" }, /secret BIG: the value is 65537 bytes; the limit is 65536/],
      ["a value with NUL", { NUL: "a\0b" }, /secret NUL: the value contains a NUL character/],
      ["a value that is not valid Unicode", { HALF: "\ud800" }, /secret HALF: the value is not valid Unicode/],
    ];
    for (const [what, values, pattern] of cases) {
      test(what, () => {
        // A valid secret in the same call: it is not written either.
        const error = assertBerthError(() => store.setMany("shop", "production", { GOOD: "fine", ...values }), "BAD_ARGUMENT", pattern);
        assert.equal(error.hint, "Nothing was changed.");
        assert.deepEqual(rows(), []);
        assert.equal(store.version("shop", "production"), 0);
        assert.equal(existsSync(keyPath), false, "no key file was created");
      });
    }

    test("limits themselves are accepted: a 128-character name, a 64 KiB value", () => {
      const name = "K".repeat(128);
      store.setMany("shop", "production", { [name]: "v".repeat(MAX_VALUE_BYTES), EMPTY: "" });
      assert.deepEqual(store.values("shop", "production"), { EMPTY: "", [name]: "v".repeat(MAX_VALUE_BYTES) });
    });
  });

  describe("values() throws, naming each secret that cannot be decrypted, instead of returning a partial set", () => {
    test("when the key version that wraps it is missing from the key file", () => {
      store.set("shop", "production", "OLD_KEY", "o");
      const ring = readKeyRing(keyPath)!;
      // Replace the file with one whose only key is a new version 2.
      writeKeyRing(keyPath, withoutKeys({ current: 2, keys: new Map([...ring.keys, [2, Buffer.alloc(32, 7)]]) }, [1]));
      store.set("shop", "production", "NEW_KEY", "n");
      const error = assertBerthError(() => store.values("shop", "production"), "INTERNAL", /shop\/production/, /OLD_KEY \(version 1\): key version 1 is not in /);
      assert.doesNotMatch(error.message, /NEW_KEY/);
    });

    test("when the key file is gone; and set refuses to start a new key file", () => {
      store.set("shop", "production", "API_KEY", "a");
      rmSync(keyPath);
      assertBerthError(() => store.values("shop", "production"), "INTERNAL", /API_KEY \(version 1\): the key file .* does not exist/);
      assertBerthError(() => store.set("shop", "production", "OTHER", "b"), "NOT_FOUND", /does not exist, but berth\.db holds secrets encrypted under key version 1/);
      assert.equal(existsSync(keyPath), false);
      assert.equal(rows().length, 1);
    });

    test("when a row's ciphertext was tampered with", () => {
      store.setMany("shop", "production", { API_KEY: "a", TOKEN: "t" });
      const handle = db();
      const row = handle.prepare("select ciphertext from secret_versions where name = 'TOKEN'").get() as { ciphertext: Buffer };
      row.ciphertext[row.ciphertext.length - 1]! ^= 0xff;
      handle.prepare("update secret_versions set ciphertext = ? where name = 'TOKEN'").run(row.ciphertext);
      handle.close();
      assertBerthError(() => store.values("shop", "production"), "INTERNAL", /TOKEN \(version 1\): the value does not authenticate/);
    });

    test("when a ciphertext was copied from another tenant's row", () => {
      store.set("blog", "production", "API_KEY", "blog-value");
      store.set("shop", "production", "API_KEY", "shop-value");
      const handle = db();
      handle.exec(`update secret_versions set (ciphertext, wrapped_key) =
        (select ciphertext, wrapped_key from secret_versions where app = 'blog') where app = 'shop'`);
      handle.close();
      assertBerthError(() => store.values("shop", "production"), "INTERNAL", /API_KEY \(version 1\): the data key does not authenticate/);
      assert.deepEqual(store.values("blog", "production"), { API_KEY: "blog-value" });
    });

    test("when the key file's permissions are too loose", () => {
      store.set("shop", "production", "API_KEY", "a");
      chmodSync(keyPath, 0o640);
      assertBerthError(() => store.values("shop", "production"), "INTERNAL", /API_KEY .*has mode 0640: it must be readable by its owner only/);
    });
  });

  describe("the key file", () => {
    test("with group or other permissions is refused, with the chmod to run", () => {
      store.set("shop", "production", "API_KEY", "a");
      for (const mode of [0o644, 0o604, 0o640, 0o660, 0o601]) {
        chmodSync(keyPath, mode);
        const error = assertBerthError(() => store.set("shop", "production", "API_KEY", "b"), "BAD_ARGUMENT", new RegExp(`has mode 0${mode.toString(8)}`));
        assert.match(error.hint ?? "", new RegExp(`chmod 600 ${keyPath}`));
        assertBerthError(() => readKeyRing(keyPath), "BAD_ARGUMENT");
        assertBerthError(() => store.rotateKey(), "BAD_ARGUMENT");
      }
      assert.equal(store.history("shop", "production", "API_KEY").length, 1, "nothing was written");
      chmodSync(keyPath, 0o400);
      assert.equal(readKeyRing(keyPath)!.current, 1);
      chmodSync(keyPath, 0o600);
      assert.deepEqual(store.values("shop", "production"), { API_KEY: "a" });
    });

    test("that is not a berth key file is refused", () => {
      mkdirSync(join(dir, "etc"));
      for (const text of ["not json", "{}", '{"current": 2, "keys": {"1": "AAAA"}}', `{"current": 1, "keys": {"1": "${Buffer.alloc(16).toString("base64")}"}}`]) {
        writeFileSync(keyPath, text, { mode: 0o600 });
        assertBerthError(() => readKeyRing(keyPath), "INTERNAL", /is not a berth key file/);
      }
    });

    test("inside the state directory is refused", () => {
      assertBerthError(() => new SecretStore(stateDir, { keyPath: join(stateDir, "secrets.key") }), "BAD_ARGUMENT", /is inside the state directory/);
      assertBerthError(() => new SecretStore(stateDir, { keyPath: stateDir }), "BAD_ARGUMENT", /is inside the state directory/);
    });

    test("path: explicit > BERTH_SECRETS_KEY > /etc/berth/PLATFORM/secrets.key", () => {
      const saved = process.env[KEY_FILE_ENV];
      try {
        delete process.env[KEY_FILE_ENV];
        assert.equal(secretsKeyPath("reference"), "/etc/berth/reference/secrets.key");
        process.env[KEY_FILE_ENV] = "/srv/keys/berth.key";
        assert.equal(secretsKeyPath("reference"), "/srv/keys/berth.key");
        assert.equal(secretsKeyPath("reference", "/mnt/key"), "/mnt/key");
      } finally {
        if (saved === undefined) delete process.env[KEY_FILE_ENV];
        else process.env[KEY_FILE_ENV] = saved;
      }
    });
  });

  describe("rotateKey", () => {
    test("re-wraps every data key (history included) under a new key version; values unchanged; the old version can then be dropped", () => {
      store.setMany("shop", "production", { API_KEY: "a1", TOKEN: "t1" });
      store.set("shop", "production", "API_KEY", "a2");
      store.unset("shop", "production", "TOKEN");
      store.set("blog", "staging", "SECRET", "s1");
      const before = rows();
      const values = { shop: store.values("shop", "production"), blog: store.values("blog", "staging"), old: store.values("shop", "production", { at: 1 }) };
      const version = store.version("shop", "production");

      const rotation = store.rotateKey();
      assert.deepEqual(rotation, { kekVersion: 2, rewrapped: 4, unusedVersions: [1] });
      const after = rows();
      assert.equal(after.length, before.length);
      after.forEach((row, i) => {
        const old = before[i]!;
        assert.deepEqual(row.ciphertext, old.ciphertext, "value ciphertexts are untouched");
        if (row.ciphertext === null) return;
        assert.equal(row.kek_version, 2);
        assert.notDeepEqual(row.wrapped_key, old.wrapped_key);
      });
      assert.equal(store.version("shop", "production"), version, "a rotation is not a change of secrets");
      assert.deepEqual(readKeyRing(keyPath)!.current, 2);
      assert.deepEqual([...readKeyRing(keyPath)!.keys.keys()], [1, 2], "the old key stays until retired");

      assert.deepEqual(store.retireKeys(), [1]);
      assert.deepEqual([...readKeyRing(keyPath)!.keys.keys()], [2]);
      assert.equal(statSync(keyPath).mode & 0o777, 0o600);
      assert.deepEqual({ shop: store.values("shop", "production"), blog: store.values("blog", "staging"), old: store.values("shop", "production", { at: 1 }) }, values);
      assert.deepEqual(store.retireKeys(), []);

      // New versions are wrapped with the new key.
      assert.equal(store.set("shop", "production", "TOKEN", "t3").kekVersion, 2);
      assert.deepEqual(store.values("shop", "production"), { API_KEY: "a2", TOKEN: "t3" });
    });

    test("retireKeys keeps a key version that a row still uses", () => {
      store.set("shop", "production", "API_KEY", "a");
      const ring = readKeyRing(keyPath)!;
      writeKeyRing(keyPath, { current: 2, keys: new Map([...ring.keys, [2, Buffer.alloc(32, 1)]]) });
      assert.deepEqual(store.retireKeys(), []);
      assert.deepEqual([...readKeyRing(keyPath)!.keys.keys()], [1, 2]);
      assert.deepEqual(store.values("shop", "production"), { API_KEY: "a" });
    });

    test("stops at a row it cannot decrypt, naming it, and re-wraps nothing", () => {
      store.setMany("shop", "production", { API_KEY: "a", TOKEN: "t" });
      const handle = db();
      handle.exec("update secret_versions set wrapped_key = zeroblob(60) where name = 'TOKEN'");
      handle.close();
      const before = rows();
      assertBerthError(() => store.rotateKey(), "INTERNAL", /key rotation stopped: secret TOKEN of shop\/production \(version 1\) cannot be decrypted/);
      assert.deepEqual(rows(), before);
      assert.deepEqual(store.retireKeys(), [], "key version 1 is still in use, so it stays");
    });

    test("with no key file and no secrets creates the first key", () => {
      assert.deepEqual(store.rotateKey(), { kekVersion: 1, rewrapped: 0, unusedVersions: [] });
      assert.equal(statSync(keyPath).mode & 0o777, 0o600);
    });

    test("two stores on one database: a set after another's rotation uses the new key", () => {
      const other = new SecretStore(stateDir, { keyPath });
      try {
        store.set("shop", "production", "A", "1");
        other.rotateKey();
        assert.equal(store.set("shop", "production", "B", "2").kekVersion, 2);
        assert.deepEqual(other.retireKeys(), [1]);
        assert.deepEqual(store.values("shop", "production"), { A: "1", B: "2" });
      } finally {
        other.close();
      }
    });
  });
});
