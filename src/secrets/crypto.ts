// Envelope encryption of secret values, pure given the key-encryption key (KEK) bytes.
// Each secret version gets its own random data key (AES-256-GCM) that encrypts the value;
// the data key is wrapped (AES-256-GCM) by the KEK. Both layers carry the associated data
// `app/env/NAME/version`, so a ciphertext copied to another tenant, environment, name or
// version fails authentication instead of decrypting into the wrong place.
import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { BerthError } from "../errors.js";

const ALGORITHM = "aes-256-gcm";
export const KEY_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;

/** Where a secret version belongs; bound into both layers' associated data. */
export interface SecretRef {
  app: string;
  env: string;
  name: string;
  version: number;
}

/** A key-encryption key and its version in the key file. */
export interface Kek {
  version: number;
  key: Buffer;
}

/** What is stored for one secret version: nothing here reveals the value without the KEK. */
export interface SealedSecret {
  /** iv ‖ tag ‖ AES-256-GCM(data key, value). */
  ciphertext: Buffer;
  /** iv ‖ tag ‖ AES-256-GCM(KEK, data key). */
  wrappedKey: Buffer;
  kekVersion: number;
}

/** Thrown when a layer fails authentication: wrong key, wrong place, or tampered bytes. */
export class DecryptionError extends Error {
  constructor(readonly layer: "data key" | "value") {
    super(`the ${layer} does not authenticate (wrong key, moved or tampered ciphertext)`);
    this.name = "DecryptionError";
  }
}

/** `app/env/NAME/version`. Parts must not contain "/", or two refs could share one string. */
export function associatedData(ref: SecretRef): Buffer {
  for (const [field, value] of [["app", ref.app], ["env", ref.env], ["name", ref.name]] as const) {
    if (value === "" || value.includes("/")) throw new BerthError("BAD_ARGUMENT", `secret ${field} "${value}": expected a non-empty name without "/"`);
  }
  if (!Number.isSafeInteger(ref.version) || ref.version < 1) throw new BerthError("BAD_ARGUMENT", `secret version ${ref.version}: expected a positive integer`);
  return Buffer.from(`${ref.app}/${ref.env}/${ref.name}/${ref.version}`, "utf8");
}

function checkKey(key: Buffer, what: string): void {
  if (key.length !== KEY_BYTES) throw new BerthError("INTERNAL", `${what} is ${key.length} bytes; AES-256 needs ${KEY_BYTES}`);
}

function seal(key: Buffer, plaintext: Buffer, aad: Buffer): Buffer {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv(ALGORITHM, key, iv, { authTagLength: TAG_BYTES });
  cipher.setAAD(aad);
  const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return Buffer.concat([iv, cipher.getAuthTag(), body]);
}

function open(key: Buffer, sealed: Buffer, aad: Buffer, layer: DecryptionError["layer"]): Buffer {
  if (sealed.length < IV_BYTES + TAG_BYTES) throw new DecryptionError(layer);
  const decipher = createDecipheriv(ALGORITHM, key, sealed.subarray(0, IV_BYTES), { authTagLength: TAG_BYTES });
  decipher.setAAD(aad);
  decipher.setAuthTag(sealed.subarray(IV_BYTES, IV_BYTES + TAG_BYTES));
  try {
    return Buffer.concat([decipher.update(sealed.subarray(IV_BYTES + TAG_BYTES)), decipher.final()]);
  } catch {
    throw new DecryptionError(layer);
  }
}

/** A random 32-byte key: a KEK or a data key. */
export function generateKey(): Buffer {
  return randomBytes(KEY_BYTES);
}

/** Encrypts `value` under a fresh data key, and wraps that key with the KEK. */
export function sealSecret(ref: SecretRef, value: string, kek: Kek): SealedSecret {
  checkKey(kek.key, `key version ${kek.version}`);
  const aad = associatedData(ref);
  const dataKey = generateKey();
  try {
    return { ciphertext: seal(dataKey, Buffer.from(value, "utf8"), aad), wrappedKey: seal(kek.key, dataKey, aad), kekVersion: kek.version };
  } finally {
    dataKey.fill(0);
  }
}

/** The value, or a DecryptionError when either layer fails to authenticate. */
export function openSecret(ref: SecretRef, sealed: Pick<SealedSecret, "ciphertext" | "wrappedKey">, kekKey: Buffer): string {
  checkKey(kekKey, "the key-encryption key");
  const aad = associatedData(ref);
  const dataKey = open(kekKey, sealed.wrappedKey, aad, "data key");
  try {
    if (dataKey.length !== KEY_BYTES) throw new DecryptionError("data key");
    return open(dataKey, sealed.ciphertext, aad, "value").toString("utf8");
  } finally {
    dataKey.fill(0);
  }
}

/** Re-wraps a data key under another KEK; the value's ciphertext stays as it is. */
export function rewrapKey(ref: SecretRef, wrappedKey: Buffer, from: Buffer, to: Kek): Buffer {
  checkKey(from, "the old key-encryption key");
  checkKey(to.key, `key version ${to.version}`);
  const aad = associatedData(ref);
  const dataKey = open(from, wrappedKey, aad, "data key");
  try {
    if (dataKey.length !== KEY_BYTES) throw new DecryptionError("data key");
    return seal(to.key, dataKey, aad);
  } finally {
    dataKey.fill(0);
  }
}
