// Where tenant roles' passwords are kept. The file store keeps them in one JSON file,
// readable by its owner only (0600), rewritten atomically: a crash mid-write leaves the
// old file or the new one, never half of one — a lost password locks a tenant out.
import { randomBytes } from "node:crypto";
import { chmod, mkdir, open, readFile, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { BerthError } from "../errors.js";
import { generatePassword } from "./scram.js";

export interface PasswordStore {
  /** The role's password; one is generated and saved first when the role has none. */
  passwordFor(role: string): Promise<string>;
  /** Forgets the role's password (after its role was dropped). */
  forget(role: string): Promise<void>;
}

export const PASSWORD_FILE = "database-passwords.json";

type Passwords = Record<string, string>;

export class FilePasswordStore implements PasswordStore {
  readonly file: string;
  /** Serializes this process's read-modify-write cycles so no update is lost. */
  private queue: Promise<unknown> = Promise.resolve();

  /** `stateDir` is created (0700) when missing. */
  constructor(
    private readonly stateDir: string,
    fileName: string = PASSWORD_FILE,
  ) {
    this.file = join(stateDir, fileName);
  }

  passwordFor(role: string): Promise<string> {
    return this.exclusive(async () => {
      const passwords = await this.read();
      const existing = passwords[role];
      if (existing !== undefined) return existing;
      const password = generatePassword();
      await this.write({ ...passwords, [role]: password });
      return password;
    });
  }

  /**
   * Replaces the role's password (rotation, or putting the previous one back). Saved before
   * the server is changed: the store never lags behind the server, and a crash in between is
   * repaired by the next converge, which sets the stored password on the role.
   */
  set(role: string, password: string): Promise<void> {
    return this.exclusive(async () => {
      const passwords = await this.read();
      if (passwords[role] === password) return;
      await this.write({ ...passwords, [role]: password });
    });
  }

  forget(role: string): Promise<void> {
    return this.exclusive(async () => {
      const passwords = await this.read();
      if (!(role in passwords)) return;
      const rest = { ...passwords };
      delete rest[role];
      await this.write(rest);
    });
  }

  private exclusive<T>(work: () => Promise<T>): Promise<T> {
    const result = this.queue.then(work);
    this.queue = result.catch(() => undefined);
    return result;
  }

  private async read(): Promise<Passwords> {
    let text: string;
    try {
      text = await readFile(this.file, "utf8");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return {};
      throw new BerthError("INTERNAL", `cannot read the password file ${this.file}: ${(error as Error).message}`, undefined, { cause: error });
    }
    // Tighten a file someone loosened by hand.
    if (((await stat(this.file)).mode & 0o077) !== 0) await chmod(this.file, 0o600);
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      // Never echo the content: it is passwords.
      throw new BerthError("INTERNAL", `the password file ${this.file} is not valid JSON`, "Restore it from a backup; berth will not overwrite it.");
    }
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed) || Object.values(parsed).some((value) => typeof value !== "string")) {
      throw new BerthError("INTERNAL", `the password file ${this.file} is not an object of role names to passwords`, "Restore it from a backup; berth will not overwrite it.");
    }
    return parsed as Passwords;
  }

  /** temp file (0600) → write → fsync → rename over the old one → fsync the directory. */
  private async write(passwords: Passwords): Promise<void> {
    await mkdir(this.stateDir, { recursive: true, mode: 0o700 });
    const temp = `${this.file}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`;
    const sorted = Object.fromEntries(Object.entries(passwords).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
    try {
      const handle = await open(temp, "wx", 0o600);
      try {
        await handle.writeFile(`${JSON.stringify(sorted, null, 2)}\n`);
        await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(temp, this.file);
    } catch (error) {
      await rm(temp, { force: true });
      const code = (error as NodeJS.ErrnoException).code === "ENOSPC" ? "DISK_FULL" : "INTERNAL";
      throw new BerthError(code, `cannot write the password file ${this.file}: ${(error as Error).message}`, "Check the state directory's space and permissions.", { cause: error });
    }
    // The rename itself is durable only once the directory is synced.
    const directory = await open(this.stateDir, "r");
    try {
      await directory.sync();
    } finally {
      await directory.close();
    }
  }
}
