// Canary helpers shared by the secrets canary tests (test/unit/secrets-canary.test.ts, and
// test/integration/secrets-files.test.ts against the real engine): the forms in which a
// value could leak, and every file under a directory.
import assert from "node:assert/strict";
import { readFile, readdir } from "node:fs/promises";
import { join } from "node:path";

/** The forms in which a value could leak: as text, UTF-16, base64 or hex. */
export function leakForms(value: string): Buffer[] {
  const utf8 = Buffer.from(value, "utf8");
  return [utf8, Buffer.from(value, "utf16le"), Buffer.from(utf8.toString("base64").slice(0, -4)), Buffer.from(utf8.toString("hex"))];
}

/** Fails when `bytes` hold any of the canaries in any of their leak forms. */
export function assertNoCanary(canaries: readonly string[], where: string, bytes: Buffer): void {
  for (const value of canaries) {
    for (const form of leakForms(value)) assert.equal(bytes.includes(form), false, `${where} holds the canary ${value}`);
  }
}

/**
 * Every file under `root`, with its bytes. A file gone between the listing and the read is
 * skipped: SQLite removes its -wal and -shm files when the last connection closes, after
 * writing what they held into the database file, which is read.
 */
export async function filesUnder(root: string): Promise<[string, Buffer][]> {
  const entries = await readdir(root, { recursive: true, withFileTypes: true });
  const files = entries.filter((entry) => entry.isFile()).map((entry) => join(entry.parentPath, entry.name));
  const read = await Promise.all(
    files.map(async (file): Promise<[string, Buffer] | undefined> => {
      try {
        return [file, await readFile(file)];
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
        throw error;
      }
    }),
  );
  return read.filter((entry) => entry !== undefined);
}
