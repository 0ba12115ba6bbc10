// Envelope encryption: exact round trips, and every kind of misplaced or altered ciphertext
// refused rather than decrypted.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { DecryptionError, associatedData, generateKey, openSecret, rewrapKey, sealSecret, type SealedSecret, type SecretRef } from "../../src/secrets/crypto.js";
import { BerthError } from "../../src/errors.js";

const ref: SecretRef = { app: "shop", env: "production", name: "STRIPE_KEY", version: 3 };
const kek = { version: 1, key: generateKey() };

function flip(buffer: Buffer, index: number): Buffer {
  const copy = Buffer.from(buffer);
  copy[index] = copy[index]! ^ 0x01;
  return copy;
}

describe("secret envelope encryption", () => {
  test("round trip: empty, ASCII, multi-line Unicode and 64 KiB values come back exactly", () => {
    for (const value of ["", "sk_live_51H", "line 1\nline 2\r\nπ ✓ 𝄞 \u{1F680}", "x".repeat(64 * 1024)]) {
      const sealed = sealSecret(ref, value, kek);
      assert.equal(sealed.kekVersion, 1);
      assert.equal(openSecret(ref, sealed, kek.key), value);
    }
  });

  test("the stored bytes do not contain the value, and equal values seal differently", () => {
    const value = "canary-5d1e0c7a-plaintext";
    const a = sealSecret(ref, value, kek);
    const b = sealSecret(ref, value, kek);
    for (const sealed of [a, b]) {
      assert.equal(Buffer.concat([sealed.ciphertext, sealed.wrappedKey]).includes(value), false);
    }
    assert.notDeepEqual(a.ciphertext, b.ciphertext);
    assert.notDeepEqual(a.wrappedKey, b.wrappedKey);
  });

  test("associated data is app/env/NAME/version", () => {
    assert.equal(associatedData(ref).toString(), "shop/production/STRIPE_KEY/3");
    // A "/" inside a part would let two different places share associated data.
    assert.throws(() => associatedData({ ...ref, app: "shop/production" }), BerthError);
    assert.throws(() => associatedData({ ...ref, env: "" }), BerthError);
    assert.throws(() => associatedData({ ...ref, version: 0 }), BerthError);
  });

  test("a ciphertext moved to another app, environment, name or version does not decrypt", () => {
    const sealed = sealSecret(ref, "value-of-shop-production", kek);
    for (const moved of [
      { ...ref, app: "blog" },
      { ...ref, env: "staging" },
      { ...ref, name: "OTHER_KEY" },
      { ...ref, version: 2 },
    ]) {
      assert.throws(() => openSecret(moved, sealed, kek.key), DecryptionError, JSON.stringify(moved));
    }
  });

  test("a value ciphertext swapped under another secret's data key does not decrypt", () => {
    const a = sealSecret(ref, "value-a", kek);
    const b = sealSecret(ref, "value-b", kek);
    assert.throws(() => openSecret(ref, { ciphertext: b.ciphertext, wrappedKey: a.wrappedKey }, kek.key), (error: unknown) => error instanceof DecryptionError && error.layer === "value");
  });

  test("any flipped bit of the ciphertext or wrapped key (iv, tag or body) is refused", () => {
    const sealed = sealSecret(ref, "tamper-me", kek);
    for (const field of ["ciphertext", "wrappedKey"] as const) {
      for (let index = 0; index < sealed[field].length; index++) {
        const tampered: SealedSecret = { ...sealed, [field]: flip(sealed[field], index) };
        assert.throws(() => openSecret(ref, tampered, kek.key), DecryptionError, `${field}[${index}]`);
      }
    }
    assert.throws(() => openSecret(ref, { ...sealed, ciphertext: sealed.ciphertext.subarray(0, 20) }, kek.key), DecryptionError);
    assert.throws(() => openSecret(ref, { ...sealed, wrappedKey: Buffer.alloc(0) }, kek.key), DecryptionError);
  });

  test("the wrong key-encryption key is refused", () => {
    const sealed = sealSecret(ref, "needs-the-right-kek", kek);
    assert.throws(() => openSecret(ref, sealed, generateKey()), (error: unknown) => error instanceof DecryptionError && error.layer === "data key");
    assert.throws(() => openSecret(ref, sealed, Buffer.alloc(16)), BerthError);
  });

  test("rewrapKey moves the data key under a new KEK; the value ciphertext is untouched", () => {
    const sealed = sealSecret(ref, "survives-rotation", kek);
    const next = { version: 2, key: generateKey() };
    const wrappedKey = rewrapKey(ref, sealed.wrappedKey, kek.key, next);
    assert.equal(openSecret(ref, { ciphertext: sealed.ciphertext, wrappedKey }, next.key), "survives-rotation");
    assert.throws(() => openSecret(ref, { ciphertext: sealed.ciphertext, wrappedKey }, kek.key), DecryptionError);
    assert.throws(() => rewrapKey({ ...ref, env: "staging" }, sealed.wrappedKey, kek.key, next), DecryptionError);
    assert.throws(() => rewrapKey(ref, sealed.wrappedKey, generateKey(), next), DecryptionError);
  });
});
