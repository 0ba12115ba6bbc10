// Long operations (deploy, rollback, password rotation): started by a request that answers
// 202 at once, run in the background, their progress lines kept for replay and streamed
// live to Server-Sent-Events subscribers. A finished operation is written to SQLite, so
// its final state stays readable after berthd restarts.
import type Database from "better-sqlite3";
import { openStateDatabase } from "../state/db.js";
import { randomBytes } from "node:crypto";
import type { Release } from "../state/store.js";
import type { Problem } from "./problem.js";

export type OperationKind = "deploy" | "rollback" | "rotate-password";

export interface OperationEvent {
  at: string;
  message: string;
}

export interface OperationView {
  id: string;
  kind: OperationKind;
  app: string;
  env: string;
  state: "running" | "succeeded" | "failed";
  actor: string;
  startedAt: string;
  finishedAt: string | null;
  release: Release | null;
  error: Problem | null;
  events: OperationEvent[];
}

type Listener = (event: { type: "progress"; data: OperationEvent } | { type: "end"; data: OperationView }) => void;

/** Progress lines kept per operation; a build can print thousands. */
const MAX_EVENTS = 2000;
/** An operation as saved; one saved before releases recorded their secrets version reads it as null. */
function stored(json: string): OperationView {
  const view = JSON.parse(json) as OperationView;
  if (view.release) view.release.secretsVersion ??= null;
  return view;
}

/** Finished operations kept in memory; older ones are read from SQLite. */
const MAX_IN_MEMORY = 200;

export class Operations {
  private readonly live = new Map<string, { view: OperationView; listeners: Set<Listener> }>();
  private readonly db: Database.Database;

  constructor(stateDir: string) {
    this.db = openStateDatabase(stateDir, "create table if not exists operations (id text primary key, app text not null, env text not null, view text not null)");
  }

  close(): void {
    this.db.close();
  }

  running(app: string, env: string): OperationView | undefined {
    for (const { view } of this.live.values()) if (view.app === app && view.env === env && view.state === "running") return view;
    return undefined;
  }

  get(id: string): OperationView | undefined {
    const live = this.live.get(id);
    if (live) return live.view;
    const row = this.db.prepare("select view from operations where id = ?").get(id) as { view: string } | undefined;
    return row && stored(row.view);
  }

  /** Starts `work` in the background; `progress` lines become the operation's events. */
  start(
    input: Pick<OperationView, "kind" | "app" | "env" | "actor">,
    work: (progress: (line: string) => void) => Promise<Release>,
    toProblem: (error: unknown) => Problem,
    onFinish?: (view: OperationView) => void,
  ): OperationView {
    const view: OperationView = { ...input, id: `op_${randomBytes(8).toString("hex")}`, state: "running", startedAt: new Date().toISOString(), finishedAt: null, release: null, error: null, events: [] };
    const entry = { view, listeners: new Set<Listener>() };
    this.live.set(view.id, entry);
    this.save(view);
    const progress = (message: string) => {
      const event = { at: new Date().toISOString(), message };
      if (view.events.length < MAX_EVENTS) view.events.push(event);
      for (const listener of entry.listeners) listener({ type: "progress", data: event });
    };
    const finish = (patch: Partial<OperationView>) => {
      Object.assign(view, patch, { finishedAt: new Date().toISOString() });
      this.save(view);
      for (const listener of entry.listeners) listener({ type: "end", data: view });
      entry.listeners.clear();
      try {
        onFinish?.(view);
      } catch (error) {
        // The operation is over and saved whatever its follow-up does; berthd keeps serving.
        process.emitWarning(`after operation ${view.id}: ${(error as Error).message}`);
      }
      this.forgetOld();
    };
    // Deferred so the 202 answer goes out before any work (and any progress) starts.
    setImmediate(() => {
      work(progress).then(
        (release) => finish({ state: "succeeded", release }),
        (error: unknown) => finish({ state: "failed", error: toProblem(error) }),
      );
    });
    return view;
  }

  /** Replays the events so far, then follows; returns the unsubscribe function. */
  subscribe(id: string, listener: Listener): () => void {
    const entry = this.live.get(id);
    const view = entry?.view ?? this.get(id);
    if (!view) return () => undefined;
    for (const event of view.events) listener({ type: "progress", data: event });
    if (view.state !== "running" || !entry) {
      listener({ type: "end", data: view });
      return () => undefined;
    }
    entry.listeners.add(listener);
    return () => entry.listeners.delete(listener);
  }

  private forgetOld(): void {
    const finished = [...this.live.values()].filter((e) => e.view.state !== "running");
    for (const old of finished.slice(0, Math.max(0, finished.length - MAX_IN_MEMORY))) this.live.delete(old.view.id);
  }

  private save(view: OperationView): void {
    this.db.prepare("insert or replace into operations (id, app, env, view) values (?, ?, ?, ?)").run(view.id, view.app, view.env, JSON.stringify(view));
  }

  /**
   * Operations still running when berthd last stopped are recorded as failed; the deploy
   * journal (recoverDeploys) has already put their environments back on a serving release.
   */
  markInterrupted(problem: Problem): number {
    let count = 0;
    for (const row of this.db.prepare("select view from operations").all() as { view: string }[]) {
      const view = stored(row.view);
      if (view.state !== "running" || this.live.has(view.id)) continue;
      this.save({ ...view, state: "failed", finishedAt: new Date().toISOString(), error: problem });
      count++;
    }
    return count;
  }
}
