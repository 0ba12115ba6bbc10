// SCRAM-SHA-256 password verifiers (RFC 5802/7677), computed here so that a role's
// plaintext password never travels to the server: a statement that carries it would
// show in the server's log (log_statement, auto_explain, an error's STATEMENT line).
// PostgreSQL stores a verifier given in CREATE/ALTER ROLE ... PASSWORD as is.
import { BerthError } from "../errors.js";
import { createHash, createHmac, pbkdf2Sync, randomBytes, timingSafeEqual } from "node:crypto";

/** PostgreSQL's default (scram_iterations in PG16; fixed in PG15). */
export const SCRAM_ITERATIONS = 4096;
const SALT_BYTES = 16;
const PREFIX = "SCRAM-SHA-256$";

interface Keys {
  storedKey: Buffer;
  serverKey: Buffer;
}

function deriveKeys(password: string, salt: Buffer, iterations: number): Keys {
  const salted = pbkdf2Sync(password, salt, iterations, 32, "sha256");
  const clientKey = createHmac("sha256", salted).update("Client Key").digest();
  return {
    storedKey: createHash("sha256").update(clientKey).digest(),
    serverKey: createHmac("sha256", salted).update("Server Key").digest(),
  };
}

/** The verifier PostgreSQL keeps in pg_authid.rolpassword for this password. */
export function scramVerifier(password: string, salt: Buffer = randomBytes(SALT_BYTES), iterations = SCRAM_ITERATIONS): string {
  // SASLprep is the identity only on printable ASCII; clients differ on anything else
  // (libpq normalizes, node-postgres does not), so such a password would not log in everywhere.
  if (!/^[\x21-\x7e]+$/.test(password)) {
    throw new BerthError("BAD_ARGUMENT", "a database password must be printable ASCII without spaces", "Let berth generate it, or pick one of letters, digits and punctuation.");
  }
  const { storedKey, serverKey } = deriveKeys(password, salt, iterations);
  return `${PREFIX}${iterations}:${salt.toString("base64")}$${storedKey.toString("base64")}:${serverKey.toString("base64")}`;
}

/** Whether a stored verifier (or null: no password) was made from this password. */
export function isVerifierOf(verifier: string | null, password: string): boolean {
  const match = verifier?.match(/^SCRAM-SHA-256\$(\d+):([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+):([A-Za-z0-9+/=]+)$/);
  if (!match) return false; // none, md5 or plaintext: not what berth sets
  const [, iterations, salt, storedKey, serverKey] = match as unknown as [string, string, string, string, string];
  const keys = deriveKeys(password, Buffer.from(salt, "base64"), Number(iterations));
  const expected = Buffer.concat([keys.storedKey, keys.serverKey]);
  const actual = Buffer.concat([Buffer.from(storedKey, "base64"), Buffer.from(serverKey, "base64")]);
  return actual.length === expected.length && timingSafeEqual(actual, expected);
}

/** A new random password: 32 bytes, URL-safe (no escaping in DATABASE_URL). */
export function generatePassword(): string {
  return randomBytes(32).toString("base64url");
}
