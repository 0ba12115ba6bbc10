// The control plane's SQLite file, berth.db in the state directory, opened the one way every
// store uses it. WAL: readers (status) never wait for a deploy's writes. synchronous=FULL: a
// committed journal step, release or audit entry survives a power cut.
import Database from "better-sqlite3";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

export function openStateDatabase(stateDir: string, schema: string): Database.Database {
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const db = new Database(join(stateDir, "berth.db"));
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = FULL");
  db.pragma("busy_timeout = 5000");
  db.exec(schema);
  return db;
}
