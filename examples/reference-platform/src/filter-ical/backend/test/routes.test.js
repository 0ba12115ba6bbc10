// Runs the real HTTP pipeline on a loopback port with a fake database.
import assert from "node:assert/strict";
import http from "node:http";
import { after, before, describe, it } from "node:test";
import { closeGracefully, createRequestListener } from "../lib/http.js";
import { createLogger } from "../lib/log.js";
import { createRoutes, parseFilter, renderCalendar } from "../routes.js";

const created = new Date("2026-03-04T05:06:07.000Z");

function fakeDb() {
  const db = {
    calls: [],
    fail: undefined,
    hang: false,
    async query(text, params) {
      db.calls.push({ text, params });
      if (db.hang) return new Promise(() => {});
      if (db.fail) throw new Error(db.fail);
      if (text === "select 1") return { rows: [{ "?column?": 1 }] };
      if (text.startsWith("select max(version)")) return { rows: [{ version: 2 }] };
      if (text.startsWith("insert into filters")) return { rows: [{ id: 7, name: params[0], pattern: params[1], created_at: created }] };
      if (text.includes("where id = $1")) return { rows: params[0] === 7 ? [{ id: 7, name: "Work; team", pattern: "standup", created_at: created }] : [] };
      if (text.startsWith("select id, name")) return { rows: [{ id: 7, name: "Work", pattern: "standup", created_at: created }] };
      throw new Error(`unexpected query: ${text}`);
    },
  };
  return db;
}

describe("filter-ical backend over HTTP", () => {
  const db = fakeDb();
  const lines = [];
  const log = createLogger({ level: "debug", write: (line) => lines.push(JSON.parse(line)) });
  let draining = false;
  const routes = createRoutes({ db, version: { name: "t", version: "1" }, isDraining: () => draining, healthTimeoutMs: 100 });
  const server = http.createServer(createRequestListener({ routes, log, isDraining: () => draining }));
  let base;

  before(async () => {
    await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
    base = `http://127.0.0.1:${server.address().port}`;
  });
  after(() => server.close());

  const post = (body, type = "application/json") =>
    fetch(`${base}/api/filters`, { method: "POST", headers: { "Content-Type": type }, body });

  it("reports healthy only when the database answers", async () => {
    db.fail = undefined;
    let res = await fetch(`${base}/health`);
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { status: "ok" });

    db.fail = "connection refused";
    res = await fetch(`${base}/health`);
    assert.equal(res.status, 503);
    assert.match((await res.json()).error, /connection refused/);
    db.fail = undefined;

    db.hang = true;
    res = await fetch(`${base}/health`);
    db.hang = false;
    assert.equal(res.status, 503);
    assert.match((await res.json()).error, /did not answer within 100 ms/);
  });

  it("lists and creates filters", async () => {
    let res = await fetch(`${base}/api/filters`);
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), {
      filters: [{ id: 7, name: "Work", pattern: "standup", created_at: created.toISOString(), ical_url: "/ical/7" }],
    });

    res = await post(JSON.stringify({ name: "  Team  ", pattern: "review|standup" }));
    assert.equal(res.status, 201);
    assert.equal((await res.json()).name, "Team");
    assert.deepEqual(db.calls.at(-1).params, ["Team", "review|standup"]);
  });

  it("rejects bad input with a message naming the field", async () => {
    let res = await post("{not json");
    assert.equal(res.status, 400);
    assert.equal((await res.json()).error, "invalid_json");

    res = await post(JSON.stringify({ name: "x" }), "text/plain");
    assert.equal(res.status, 415);

    res = await post(JSON.stringify({ name: "", pattern: "(" }));
    assert.equal(res.status, 400);
    const body = await res.json();
    assert.equal(body.error, "invalid_input");
    assert.match(body.message, /^name: must be 1-100 characters; pattern: not a valid regular expression/);

    res = await post("x".repeat(20_000));
    assert.equal(res.status, 413);
  });

  it("answers 413 to an oversized chunked body and closes that connection only", async () => {
    const chunk = new TextEncoder().encode("x".repeat(8192));
    let sent = 0;
    const body = new ReadableStream({
      pull(controller) {
        if (sent++ < 4) controller.enqueue(chunk);
        else controller.close();
      },
    });
    const res = await fetch(`${base}/api/filters`, { method: "POST", headers: { "Content-Type": "application/json" }, body, duplex: "half" });
    assert.equal(res.status, 413);
    assert.equal(res.headers.get("connection"), "close");
    assert.equal((await res.json()).error, "body_too_large");

    const ok = await fetch(`${base}/api/filters`);
    assert.equal(ok.headers.get("connection"), "keep-alive");
  });

  it("serves a calendar for an existing filter and 404 otherwise", async () => {
    let res = await fetch(`${base}/ical/7`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-type"), "text/calendar; charset=utf-8");
    const text = await res.text();
    assert.match(text, /^BEGIN:VCALENDAR\r\n/);
    assert.match(text, /X-WR-CALNAME:Work\\; team\r\n/);

    assert.equal((await fetch(`${base}/ical/8.ics`)).status, 404);
    assert.equal((await fetch(`${base}/ical/abc`)).status, 404);
  });

  it("answers unknown paths and methods clearly", async () => {
    let res = await fetch(`${base}/nope`);
    assert.equal(res.status, 404);
    res = await fetch(`${base}/api/filters`, { method: "DELETE" });
    assert.equal(res.status, 405);
    assert.equal(res.headers.get("allow"), "GET, POST");
  });

  it("tells its version and schema version", async () => {
    const res = await fetch(`${base}/api/version`);
    assert.deepEqual(await res.json(), { name: "t", version: "1", schema_version: 2 });
  });

  it("echoes the request id and logs it", async () => {
    const res = await fetch(`${base}/api/filters`, { headers: { "X-Request-ID": "abc-123" } });
    assert.equal(res.headers.get("x-request-id"), "abc-123");
    await new Promise((resolve) => setImmediate(resolve));
    const entry = lines.findLast((l) => l.msg === "request");
    assert.equal(entry.request_id, "abc-123");
    assert.equal(entry.level, "info");
    assert.equal(entry.status, 200);

    const generated = (await fetch(`${base}/nope`, { headers: { "X-Request-ID": "bad id\n" } })).headers.get("x-request-id");
    assert.match(generated, /^[0-9a-f-]{36}$/);
  });

  it("reports draining on /health while shutting down", async () => {
    draining = true;
    const res = await fetch(`${base}/health`);
    draining = false;
    assert.equal(res.status, 503);
    assert.equal(res.headers.get("connection"), "close");
  });
});

describe("graceful close", () => {
  it("lets an in-flight request finish, then resolves", async () => {
    let release;
    const slow = new Promise((resolve) => (release = resolve));
    const routes = [{ method: "GET", path: "/slow", handler: async () => (await slow, { json: { done: true } }) }];
    const server = http.createServer(createRequestListener({ routes, log: createLogger({ write: () => {} }) }));
    await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
    const pending = fetch(`http://127.0.0.1:${server.address().port}/slow`);
    await new Promise((resolve) => setTimeout(resolve, 50));
    const closed = closeGracefully(server, 2000);
    setTimeout(release, 100);
    const res = await pending;
    assert.deepEqual(await res.json(), { done: true });
    await closed;
  });

  it("rejects when requests do not finish in time", async () => {
    const routes = [{ method: "GET", path: "/hang", handler: () => new Promise(() => {}) }];
    const server = http.createServer(createRequestListener({ routes, log: createLogger({ write: () => {} }) }));
    await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
    fetch(`http://127.0.0.1:${server.address().port}/hang`).catch(() => {});
    await new Promise((resolve) => setTimeout(resolve, 50));
    await assert.rejects(closeGracefully(server, 100), /did not answer within 100 ms/);
    server.closeAllConnections();
  });
});

describe("parseFilter and renderCalendar", () => {
  it("names every bad field", () => {
    assert.throws(() => parseFilter([]), /Expected a JSON object/);
    assert.throws(() => parseFilter({ pattern: "a", extra: 1 }), (err) => {
      assert.deepEqual(err.details.map((d) => d.field), ["extra", "name"]);
      return true;
    });
  });

  it("folds long lines at 75 octets with CRLF endings", () => {
    const text = renderCalendar({ id: 1, name: "ü".repeat(100), pattern: "x", created_at: created }, created);
    for (const line of text.split("\r\n")) assert.ok(Buffer.byteLength(line) <= 75, line);
    assert.ok(text.includes("DTSTART;VALUE=DATE:20260304\r\n"));
    assert.ok(text.includes("DTSTAMP:20260304T050607Z\r\n"));
    const unfolded = text.replace(/\r\n /g, "");
    assert.ok(unfolded.includes(`X-WR-CALNAME:${"ü".repeat(100)}\r\n`));
  });
});
