// The control plane's embedded store (SQLite): releases, deploy locks and the deploy
// journal. Releases are immutable once finished; only their status moves forward.
import type Database from "better-sqlite3";
import { openStateDatabase } from "./db.js";
import { BerthError } from "../errors.js";

export type ReleaseStatus = "deploying" | "active" | "superseded" | "failed" | "rolled-back";

export interface Release {
  id: number;
  app: string;
  env: string;
  /** Sequence number within the environment: r1, r2, … */
  number: number;
  /** Image reference per component. */
  images: Record<string, string>;
  /** Image ids per component, as the engine reported them when the release was made. */
  imageIds: Record<string, string>;
  sourceCommit: string | null;
  /** The environment's secrets version the release was made with (null: made before releases recorded it). */
  secretsVersion: number | null;
  actor: string;
  reason: string;
  status: ReleaseStatus;
  failure: string | null;
  /** Whether a release command (migration) ran for it. */
  hasRunReleaseCommand: boolean;
  /** Milliseconds per step. */
  timings: Record<string, number>;
  createdAt: string;
  finishedAt: string | null;
}

export interface DeployLock {
  app: string;
  env: string;
  releaseId: number;
  holder: string;
  pid: number;
  startedAt: string;
}

interface ReleaseRow {
  id: number;
  app: string;
  env: string;
  number: number;
  images: string;
  image_ids: string;
  source_commit: string | null;
  secrets_version: number | null;
  actor: string;
  reason: string;
  status: ReleaseStatus;
  failure: string | null;
  ran_release_command: number;
  timings: string;
  created_at: string;
  finished_at: string | null;
}

const SCHEMA = `
create table if not exists releases (
  id integer primary key,
  app text not null,
  env text not null,
  number integer not null,
  images text not null,
  image_ids text not null,
  source_commit text,
  secrets_version integer,
  actor text not null,
  reason text not null,
  status text not null,
  failure text,
  ran_release_command integer not null default 0,
  timings text not null default '{}',
  created_at text not null,
  finished_at text,
  unique (app, env, number)
);
create table if not exists deploy_locks (
  app text not null,
  env text not null,
  release_id integer not null,
  holder text not null,
  pid integer not null,
  started_at text not null,
  primary key (app, env)
);
create table if not exists journal (
  id integer primary key,
  release_id integer not null,
  step text not null,
  at text not null
);
`;

const now = () => new Date().toISOString();

function toRelease(row: ReleaseRow): Release {
  return {
    id: row.id,
    app: row.app,
    env: row.env,
    number: row.number,
    images: JSON.parse(row.images) as Record<string, string>,
    imageIds: JSON.parse(row.image_ids) as Record<string, string>,
    sourceCommit: row.source_commit,
    secretsVersion: row.secrets_version,
    actor: row.actor,
    reason: row.reason,
    status: row.status,
    failure: row.failure,
    hasRunReleaseCommand: row.ran_release_command === 1,
    timings: JSON.parse(row.timings) as Record<string, number>,
    createdAt: row.created_at,
    finishedAt: row.finished_at,
  };
}

export class Store {
  private readonly db: Database.Database;

  constructor(stateDir: string) {
    this.db = openStateDatabase(stateDir, SCHEMA);
    // State made before releases recorded their secrets version. Altered under the write lock,
    // checked again there: berthd, its jobs and a CLI command may open an old database at once.
    const hasColumn = () => (this.db.prepare("select name from pragma_table_info('releases')").all() as { name: string }[]).some((column) => column.name === "secrets_version");
    if (!hasColumn()) {
      this.db
        .transaction(() => {
          if (!hasColumn()) this.db.exec("alter table releases add column secrets_version integer");
        })
        .immediate();
    }
  }

  close(): void {
    this.db.close();
  }

  /**
   * Takes the environment's deploy lock and records a new release, in one transaction:
   * two deploys of one environment cannot both start.
   */
  beginRelease(input: Pick<Release, "app" | "env" | "images" | "imageIds" | "sourceCommit" | "secretsVersion" | "actor" | "reason">): Release {
    const begin = this.db.transaction(() => {
      const lock = this.lockOf(input.app, input.env);
      if (lock) {
        throw new BerthError(
          "CONFLICT",
          `deploy refused: ${input.app}/${input.env} is being deployed by ${lock.holder} (pid ${lock.pid}) since ${lock.startedAt} (release r${this.releaseById(lock.releaseId)?.number ?? "?"})`,
          `Wait for it to finish, then try again.`,
        );
      }
      const last = this.db.prepare("select max(number) as n from releases where app = ? and env = ?").get(input.app, input.env) as { n: number | null };
      const info = this.db
        .prepare(
          "insert into releases (app, env, number, images, image_ids, source_commit, secrets_version, actor, reason, status, created_at) values (?, ?, ?, ?, ?, ?, ?, ?, ?, 'deploying', ?)",
        )
        .run(input.app, input.env, (last.n ?? 0) + 1, JSON.stringify(input.images), JSON.stringify(input.imageIds), input.sourceCommit, input.secretsVersion, input.actor, input.reason, now());
      const id = Number(info.lastInsertRowid);
      this.db
        .prepare("insert into deploy_locks (app, env, release_id, holder, pid, started_at) values (?, ?, ?, ?, ?, ?)")
        .run(input.app, input.env, id, input.actor, process.pid, now());
      return this.releaseById(id)!;
    });
    return begin.immediate();
  }

  /** Records a step before it runs, so a crash leaves a trace of where it stopped. */
  journal(releaseId: number, step: string): void {
    this.db.prepare("insert into journal (release_id, step, at) values (?, ?, ?)").run(releaseId, step, now());
  }

  journalOf(releaseId: number): string[] {
    return (this.db.prepare("select step from journal where release_id = ? order by id").all(releaseId) as { step: string }[]).map((row) => row.step);
  }

  /** Ends a deploy: the release's final status, and the lock is released. */
  finishRelease(release: Release, outcome: { status: "active" | "failed" | "rolled-back"; failure?: string; hasRunReleaseCommand: boolean; timings: Record<string, number> }): void {
    this.db.transaction(() => {
      if (outcome.status === "active") {
        this.db.prepare("update releases set status = 'superseded' where app = ? and env = ? and status = 'active'").run(release.app, release.env);
      }
      this.db
        .prepare("update releases set status = ?, failure = ?, ran_release_command = ?, timings = ?, finished_at = ? where id = ?")
        .run(outcome.status, outcome.failure ?? null, outcome.hasRunReleaseCommand ? 1 : 0, JSON.stringify(outcome.timings), now(), release.id);
      this.db.prepare("delete from deploy_locks where app = ? and env = ? and release_id = ?").run(release.app, release.env, release.id);
    })();
  }

  lockOf(app: string, env: string): DeployLock | undefined {
    const row = this.db.prepare("select * from deploy_locks where app = ? and env = ?").get(app, env) as
      | { app: string; env: string; release_id: number; holder: string; pid: number; started_at: string }
      | undefined;
    return row && { app: row.app, env: row.env, releaseId: row.release_id, holder: row.holder, pid: row.pid, startedAt: row.started_at };
  }

  locks(): DeployLock[] {
    const rows = this.db.prepare("select app, env from deploy_locks").all() as { app: string; env: string }[];
    return rows.map((row) => this.lockOf(row.app, row.env)!);
  }

  releaseById(id: number): Release | undefined {
    const row = this.db.prepare("select * from releases where id = ?").get(id) as ReleaseRow | undefined;
    return row && toRelease(row);
  }

  releases(app: string, env: string): Release[] {
    return (this.db.prepare("select * from releases where app = ? and env = ? order by number desc").all(app, env) as ReleaseRow[]).map(toRelease);
  }

  release(app: string, env: string, number: number): Release | undefined {
    const row = this.db.prepare("select * from releases where app = ? and env = ? and number = ?").get(app, env, number) as ReleaseRow | undefined;
    return row && toRelease(row);
  }

  activeRelease(app: string, env: string): Release | undefined {
    const row = this.db.prepare("select * from releases where app = ? and env = ? and status = 'active'").get(app, env) as ReleaseRow | undefined;
    return row && toRelease(row);
  }

  activeReleases(): Release[] {
    return (this.db.prepare("select * from releases where status = 'active' order by app, env").all() as ReleaseRow[]).map(toRelease);
  }
}
