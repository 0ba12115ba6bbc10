// The releases table of state made before releases recorded their secrets version: opening the
// store adds the column, old releases read as null (today's secrets), new ones record theirs.
import assert from "node:assert/strict";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import Database from "better-sqlite3";
import { Store } from "../../src/state/store.js";

test("a releases table without secrets_version gains it; old releases read null, new ones record theirs", async () => {
  const dir = await mkdtemp(join(tmpdir(), "berth-store-"));
  const old = new Database(join(dir, "berth.db"));
  old.exec(`create table releases (
    id integer primary key, app text not null, env text not null, number integer not null, images text not null,
    image_ids text not null, source_commit text, actor text not null, reason text not null, status text not null,
    failure text, ran_release_command integer not null default 0, timings text not null default '{}',
    created_at text not null, finished_at text, unique (app, env, number));
    insert into releases (app, env, number, images, image_ids, actor, reason, status, created_at)
      values ('shop', 'production', 1, '{"web":"shop:v1"}', '{}', 'ci', 'first', 'active', '2026-01-01T00:00:00.000Z');`);
  old.close();

  const store = new Store(dir);
  try {
    assert.equal(store.activeRelease("shop", "production")?.secretsVersion, null);
    const next = store.beginRelease({ app: "shop", env: "production", images: { web: "shop:v2" }, imageIds: {}, sourceCommit: null, secretsVersion: 3, actor: "ci", reason: "second" });
    assert.deepEqual([next.number, next.secretsVersion], [2, 3]);
  } finally {
    store.close();
  }
  // Opening it again finds the column and adds nothing.
  const again = new Store(dir);
  assert.equal(again.releases("shop", "production")[0]!.secretsVersion, 3);
  again.close();
});

test("an operation saved before releases recorded their secrets version reads it as null", async () => {
  const dir = await mkdtemp(join(tmpdir(), "berth-operations-"));
  const { Operations } = await import("../../src/api/operations.js");
  const operations = new Operations(dir);
  operations.close();
  const release = { id: 1, app: "shop", env: "production", number: 1, images: {}, imageIds: {}, sourceCommit: null, actor: "ci", reason: "old", status: "active", failure: null, hasRunReleaseCommand: false, timings: {}, createdAt: "2026-01-01T00:00:00.000Z", finishedAt: null };
  const view = { id: "op_0123456789abcdef", kind: "deploy", app: "shop", env: "production", state: "succeeded", actor: "admin", startedAt: release.createdAt, finishedAt: release.createdAt, release, error: null, events: [] };
  const db = new Database(join(dir, "berth.db"));
  db.prepare("insert into operations (id, app, env, view) values (?, ?, ?, ?)").run(view.id, "shop", "production", JSON.stringify(view));
  db.close();
  const reopened = new Operations(dir);
  try {
    assert.equal(reopened.get(view.id)?.release?.secretsVersion, null);
  } finally {
    reopened.close();
  }
});
