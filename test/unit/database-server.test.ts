// Pure renderers of the database concern: pg_hba.conf, the server's flags, DATABASE_URL.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { renderHba } from "../../src/database/hba.js";
import { databaseUrl, postgresServerSettings } from "../../src/database/server.js";
import { BerthError } from "../../src/errors.js";
import type { DatabasePlan, PostgresPlan } from "../../src/plan/types.js";

const plan = (name: string, connectionLimit = 10): DatabasePlan => ({
  name,
  role: name,
  connectionLimit,
  statementTimeoutMs: 30000,
  idleInTransactionTimeoutMs: 60000,
});

void describe("renderHba", () => {
  void it("lets the admin in everywhere, each tenant into its own database only, and rejects the rest", () => {
    const text = renderHba({ admin: "berth", plans: [plan("gabs_massage_staging"), plan("filter_ical_production")] });
    assert.equal(
      text,
      [
        "# pg_hba.conf written by berth: edits here are overwritten at the next apply.",
        "# First match wins. Each tenant role reaches its own database only; the last lines reject the rest.",
        "# TYPE  DATABASE                  USER                      ADDRESS  METHOD",
        'local   all                       "berth"                            scram-sha-256',
        'host    all                       "berth"                   all      scram-sha-256',
        'host    "filter_ical_production"  "filter_ical_production"  all      scram-sha-256',
        'host    "gabs_massage_staging"    "gabs_massage_staging"    all      scram-sha-256',
        "local   all                       all                                reject",
        "host    all                       all                       all      reject",
        "",
      ].join("\n"),
    );
  });

  void it("is the same bytes for the same plans in any order", () => {
    const a = renderHba({ admin: "berth", plans: [plan("a_production"), plan("b_staging")] });
    const b = renderHba({ admin: "berth", plans: [plan("b_staging"), plan("a_production")] });
    assert.equal(a, b);
  });

  void it("quotes names so that a keyword or +group is taken literally, and uses peer when asked", () => {
    const text = renderHba({ admin: "postgres", plans: [plan("all")], localAdminMethod: "peer" });
    assert.deepEqual(text.split("\n").slice(3, 6), [
      'local   all       "postgres"           peer',
      'host    all       "postgres"  all      scram-sha-256',
      'host    "all"     "all"       all      scram-sha-256',
    ]);
  });

  void it("refuses names the file format cannot hold", () => {
    for (const bad of ['a"b', "a b", "a\nhost all all all trust", ""]) {
      assert.throws(() => renderHba({ admin: "berth", plans: [plan(bad)] }), BerthError, JSON.stringify(bad));
    }
  });
});

void describe("postgresServerSettings", () => {
  const container: PostgresPlan = {
    kind: "container",
    container: "berth-reference-postgres",
    image: "berth-postgres:15",
    volume: "berth-reference-postgres-data",
    maxConnections: 100,
    reservedConnections: 5,
    networks: [],
    labels: {},
  };

  void it("sets connections, reserved slots for the admin, scram and logging", () => {
    assert.deepEqual(postgresServerSettings(container), [
      "-c", "listen_addresses=*",
      "-c", "max_connections=100",
      "-c", "superuser_reserved_connections=5",
      "-c", "max_wal_senders=10",
      "-c", "password_encryption=scram-sha-256",
      "-c", "log_connections=on",
      "-c", "log_lock_waits=on",
      "-c", "log_line_prefix=%m [%p] %q%u@%d ",
      "-c", "log_timezone=UTC",
    ]);
  });

  void it("lowers max_wal_senders so that a small server still starts", () => {
    const flags = postgresServerSettings({ ...container, maxConnections: 12, reservedConnections: 3 });
    assert.ok(flags.includes("max_wal_senders=8"), flags.join(" "));
  });

  void it("refuses more reserved connections than there are", () => {
    assert.throws(() => postgresServerSettings({ ...container, maxConnections: 5, reservedConnections: 5 }), /reservedConnections \(5\) must be less than postgres.maxConnections \(5\)/);
  });
});

void describe("databaseUrl", () => {
  void it("points at the environment's database as its role", () => {
    assert.equal(
      databaseUrl(plan("filter_ical_production"), "Zq8-_x", "berth-reference-postgres", 5432),
      "postgresql://filter_ical_production:Zq8-_x@berth-reference-postgres:5432/filter_ical_production",
    );
  });

  void it("percent-encodes a password that needs it, and defaults to port 5432", () => {
    const url = databaseUrl(plan("a_production"), "p@ss:w/rd%", "db");
    assert.equal(url, "postgresql://a_production:p%40ss%3Aw%2Frd%25@db:5432/a_production");
    assert.equal(decodeURIComponent(new URL(url).password), "p@ss:w/rd%");
  });
});
