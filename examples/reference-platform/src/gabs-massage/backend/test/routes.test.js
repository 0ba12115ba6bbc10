// Runs the real HTTP pipeline on a loopback port with a fake database.
import assert from "node:assert/strict";
import http from "node:http";
import { after, before, describe, it } from "node:test";
import { createRequestListener } from "../lib/http.js";
import { createLogger } from "../lib/log.js";
import { createRoutes, parseBooking } from "../routes.js";

function fakeDb() {
  let visits = 0;
  const db = {
    calls: [],
    fail: undefined,
    async query(text, params) {
      db.calls.push({ text, params });
      if (db.fail) throw new Error(db.fail);
      if (text === "select 1") return { rows: [{}] };
      if (text.startsWith("insert into visits")) return { rows: [{ count: String(++visits) }] }; // bigint arrives as text
      if (text.startsWith("select max(version)")) return { rows: [{ version: 2 }] };
      if (text.startsWith("insert into bookings")) {
        return { rows: [{ id: 1, name: params[0], starts_at: params[1], note: params[2], created_at: new Date(0) }] };
      }
      if (text.startsWith("select id, name, starts_at")) return { rows: [] };
      throw new Error(`unexpected query: ${text}`);
    },
  };
  return db;
}

describe("gabs-massage backend over HTTP", () => {
  const db = fakeDb();
  const log = createLogger({ write: () => {} });
  const routes = createRoutes({ db, version: { name: "t", version: "1" }, isDraining: () => false, healthTimeoutMs: 100 });
  const server = http.createServer(createRequestListener({ routes, log }));
  let base;

  before(async () => {
    await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
    base = `http://127.0.0.1:${server.address().port}`;
  });
  after(() => server.close());

  it("counts visits on /", async () => {
    assert.deepEqual(await (await fetch(`${base}/`)).json(), { visits: 1 });
    assert.deepEqual(await (await fetch(`${base}/`)).json(), { visits: 2 });
  });

  it("reports unhealthy when the database fails", async () => {
    assert.equal((await fetch(`${base}/health`)).status, 200);
    db.fail = "password authentication failed";
    const res = await fetch(`${base}/health`);
    db.fail = undefined;
    assert.equal(res.status, 503);
    assert.equal((await res.json()).error, "database: password authentication failed");
  });

  it("creates and lists bookings", async () => {
    const res = await fetch(`${base}/api/bookings`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ name: "Ada", starts_at: "2026-05-01T10:00:00+02:00" }),
    });
    assert.equal(res.status, 201);
    const booking = await res.json();
    assert.equal(booking.starts_at, "2026-05-01T08:00:00.000Z");
    assert.equal(booking.note, "");
    assert.deepEqual(await (await fetch(`${base}/api/bookings`)).json(), { bookings: [] });
  });

  it("rejects bad bookings naming the fields", async () => {
    const res = await fetch(`${base}/api/bookings`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ name: "Ada", starts_at: "tomorrow", note: 5 }),
    });
    assert.equal(res.status, 400);
    const body = await res.json();
    assert.deepEqual(body.details.map((d) => d.field), ["starts_at", "note"]);
    assert.match(body.message, /^starts_at: not a date and time/);
  });
});

describe("parseBooking", () => {
  it("accepts a booking with a note and trims the name", () => {
    const b = parseBooking({ name: " Bo ", starts_at: "2026-05-01T10:00Z", note: "60 min" });
    assert.deepEqual(b, { name: "Bo", startsAt: new Date("2026-05-01T10:00:00Z"), note: "60 min" });
  });

  it("requires an offset and a real date", () => {
    assert.throws(() => parseBooking({ name: "x", starts_at: "2026-05-01T10:00:00" }), /starts_at/);
    assert.throws(() => parseBooking({ name: "x", starts_at: "2026-13-45T10:00:00Z" }), /starts_at/);
    assert.throws(() => parseBooking("x"), /Expected a JSON object/);
  });
});
