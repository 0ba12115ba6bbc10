// The router (router.lua, as berth ships it) running in the host's nginx, on 127.0.0.1 only:
// route tables rendered by renderRouteTable and swapped in while nginx runs, two small backends
// (one on IPv4, one on IPv6 loopback). Checks what the rendered-text tests cannot: replicas in
// turn, a refusing address skipped, no address answered with the unavailable page, a path no
// route takes answered as nginx's own locations would. Skipped where nginx's Lua module is not
// installed (CI's setup installs it).
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { chmod, mkdir, mkdtemp, readFile, rename, rm, writeFile } from "node:fs/promises";
import { createServer, request, type Server } from "node:http";
import { connect, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { EnvironmentPlan } from "../../src/plan/types.js";
import { renderRouteTable } from "../../src/proxy/route-table.js";
import { requestIdLine, requestIds } from "../../src/proxy/nginx-conf.js";
import { ROUTER_LUA } from "../../src/proxy/router-lua.js";
import { renderConfig } from "../../src/proxy/syntax.js";

const NGINX = "/usr/sbin/nginx";
const MODULES = ["/usr/lib/nginx/modules/ndk_http_module.so", "/usr/lib/nginx/modules/ngx_http_lua_module.so"];
const CAN_RUN = [NGINX, ...MODULES].every((path) => existsSync(path));
const CONFIG_HASH = "router-test";
const PUBLIC_PORT = 39180;

/** One app environment "t/prod" with components web and api, routed as given (kind, path, component). */
function environment(routes: [kind: "prefix" | "regex", path: string, component: string][]): EnvironmentPlan {
  return {
    app: "t",
    env: "prod",
    components: [{ name: "web" }, { name: "api" }],
    routes: routes.map(([kind, path, component]) => ({ kind, path, upstream: `t_${component}_prod`, limit: { name: "general" } })),
  } as unknown as EnvironmentPlan;
}

function nginxConf(dir: string, port: number): string {
  return `${MODULES.map((module) => `load_module ${module};`).join("\n")}
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 256; }
http {
  # Request ids as berth renders them: the map, and the line each server starts with.
${renderConfig(requestIds())}
  log_format ids "$berth_request_id $status";
  access_log ${dir}/access.log ids;
  lua_shared_dict berth_router 64k;
  init_by_lua_block {
    berth_router = dofile("${dir}/router.lua")
    berth_router.start({ live = "${dir}/routes.tsv", generations = "${dir}/gen", file = "routes.tsv" })
  }
  init_worker_by_lua_block { berth_router.watch() }
  upstream berth_backends {
    server 0.0.0.1:1;
    balancer_by_lua_block { berth_router.balance() }
    keepalive 8;
  }
  server {
    listen 127.0.0.1:${port};
    server_name t.test;
    ${requestIdLine()}
    set $berth_forwarded_port ${PUBLIC_PORT};
    add_header X-Request-ID $berth_request_id always;
    error_page 502 504 /unavailable;
    error_page 404 = @berth_no_route;
    location / {
      set $berth_route_limit "";
      set_by_lua_block $berth_upstream { return berth_router.route("t", "prod") }
      if ($berth_upstream = "") { return 404; }
      if ($berth_upstream = "-") { return 502; }
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Request-ID $berth_request_id;
      proxy_next_upstream error timeout;
      proxy_pass http://berth_backends;
    }
    location @berth_no_route { content_by_lua_block { berth_router.no_route("t", "prod") } }
    location = /unavailable { internal; return 502 "unavailable\\n"; }
    location = /__token { content_by_lua_block { berth_router.answer_token() } }
    # 200,000 ids in a row from this worker: how many were malformed, and how many distinct.
    location = /__ids {
      content_by_lua_block {
        local seen, distinct, malformed = {}, 0, 0
        for _ = 1, 200000 do
          local id = berth_router.request_id()
          if not id:match("^" .. string.rep("%x", 32) .. "$") or id:match("%u") then malformed = malformed + 1 end
          if not seen[id] then seen[id] = true; distinct = distinct + 1 end
        end
        ngx.print(malformed, " ", distinct)
      }
    }
  }
}
`;
}

interface Answer {
  status: number;
  body: string;
  location?: string;
}

function get(port: number, path: string): Promise<Answer> {
  return getWithIds(port, path).then(({ requestId: _, seenId: __, ...answer }) => answer);
}

/** A GET that also returns the X-Request-ID nginx answered with and the one the backend received. */
function getWithIds(port: number, path: string, requestId?: string): Promise<Answer & { requestId?: string; seenId?: string }> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { host: "t.test", ...(requestId === undefined ? {} : { "x-request-id": requestId }) };
    const req = request({ host: "127.0.0.1", port, path, headers, agent: false, timeout: 5000 }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => (body += chunk));
      res.on("end", () =>
        resolve({
          status: res.statusCode ?? 0,
          body,
          ...(res.headers.location ? { location: res.headers.location } : {}),
          ...(typeof res.headers["x-request-id"] === "string" ? { requestId: res.headers["x-request-id"] } : {}),
          ...(typeof res.headers["x-seen-request-id"] === "string" ? { seenId: res.headers["x-seen-request-id"] } : {}),
        }),
      );
    });
    req.on("timeout", () => req.destroy(new Error(`GET ${path} timed out`)));
    req.on("error", reject);
    req.end();
  });
}

/** A backend that answers its name and the path it got, and the request id it got in a header. */
async function backend(name: string, host: string): Promise<Server> {
  const server = createServer((req, res) => {
    if (typeof req.headers["x-request-id"] === "string") res.setHeader("x-seen-request-id", req.headers["x-request-id"]);
    res.end(`${name} ${req.url}`);
  });
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  return server;
}

describe("the router in nginx", { skip: CAN_RUN ? false : "nginx or its Lua module is not installed" }, () => {
  let dir: string;
  let port: number;
  let nginx: ChildProcess | undefined;
  let v4: Server;
  let v6: Server;
  let v4Address: string;
  let v6Address: string;

  /** Writes a table as berth swaps one in (a rename over the live file) and waits until the worker routes by it. */
  async function adopt(routes: [kind: "prefix" | "regex", path: string, component: string][], upstreams: Record<string, string[]>): Promise<void> {
    const table = renderRouteTable([environment(routes)], upstreams, CONFIG_HASH);
    await writeFile(join(dir, "routes.tsv.new"), table.text);
    await rename(join(dir, "routes.tsv.new"), join(dir, "routes.tsv"));
    let answer = "";
    for (const deadline = Date.now() + 5000; answer !== table.token && Date.now() < deadline; await new Promise((r) => setTimeout(r, 20))) {
      answer = (await get(port, "/__token")).body;
    }
    assert.equal(answer, table.token, `the worker adopted the table; error log:\n${await readFile(join(dir, "error.log"), "utf8").catch(() => "")}`);
  }

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "berth-router-"));
    // nginx's workers run as an unprivileged user when it starts as root: they read the table.
    await chmod(dir, 0o755);
    await mkdir(join(dir, "gen"));
    v4 = await backend("v4", "127.0.0.1");
    v6 = await backend("v6", "::1");
    v4Address = `127.0.0.1:${(v4.address() as AddressInfo).port}`;
    v6Address = `[::1]:${(v6.address() as AddressInfo).port}`;
    // A free port for nginx: taken by a throwaway listener, then released.
    const probe = await backend("probe", "127.0.0.1");
    port = (probe.address() as AddressInfo).port;
    await new Promise((resolve) => probe.close(resolve));
    await writeFile(join(dir, "router.lua"), ROUTER_LUA);
    await writeFile(join(dir, "routes.tsv"), renderRouteTable([environment([["prefix", "/", "web"]])], {}, CONFIG_HASH).text);
    await writeFile(join(dir, "nginx.conf"), nginxConf(dir, port));
    nginx = spawn(NGINX, ["-p", dir, "-c", join(dir, "nginx.conf"), "-g", "daemon off;"], { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    nginx.stderr!.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    for (const deadline = Date.now() + 5000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 50))) {
      if (await get(port, "/__token").then(() => true, () => false)) return;
      if (nginx.exitCode !== null) break;
    }
    assert.fail(`nginx did not start: ${stderr}`);
  });
  after(async () => {
    nginx?.kill("SIGQUIT");
    if (nginx && nginx.exitCode === null) await new Promise((resolve) => nginx!.once("exit", resolve));
    await Promise.all([v4, v6].map((server) => new Promise((resolve) => server?.close(resolve))));
    await rm(dir, { recursive: true, force: true });
  });

  /** The access log once `written` holds for it, or as it is after 5 s (nginx writes a line after its answer). */
  async function accessLog(written: (text: string) => boolean): Promise<string> {
    let text = "";
    for (const deadline = Date.now() + 5000; !written(text) && Date.now() < deadline; await new Promise((r) => setTimeout(r, 20))) {
      text = await readFile(join(dir, "access.log"), "utf8");
    }
    return text;
  }

  test("replicas take turns, IPv6 addresses included", async () => {
    await adopt([["prefix", "/", "web"]], { t_web_prod: [v4Address, v6Address] });
    const answers = [];
    for (let i = 0; i < 4; i++) answers.push((await get(port, "/x")).body);
    assert.deepEqual(answers.sort(), ["v4 /x", "v4 /x", "v6 /x", "v6 /x"]);
  });

  test("an address that refuses is skipped for the next one; an upstream without address answers the unavailable page", async () => {
    const refusing = await backend("gone", "127.0.0.1");
    const refusingAddress = `127.0.0.1:${(refusing.address() as AddressInfo).port}`;
    await new Promise((resolve) => refusing.close(resolve));
    await adopt([["prefix", "/", "web"]], { t_web_prod: [refusingAddress, v4Address] });
    for (let i = 0; i < 4; i++) assert.equal((await get(port, "/")).body, "v4 /");
    assert.match(await readFile(join(dir, "error.log"), "utf8"), new RegExp(`upstream: "http://${refusingAddress.replaceAll(".", "\\.")}/"`));

    await adopt([["prefix", "/", "web"]], { t_web_prod: [] });
    assert.deepEqual(await get(port, "/"), { status: 502, body: "unavailable\n" });
  });

  test("the first matching regex wins, else the longest prefix; no route is a 404, and /docs goes to /docs/ when that is a route", async () => {
    await adopt(
      [
        ["regex", "\\.json$", "api"],
        ["prefix", "/docs/", "web"],
        ["prefix", "/api/", "api"],
      ],
      { t_web_prod: [v4Address], t_api_prod: [v6Address] },
    );
    assert.equal((await get(port, "/docs/a.json")).body, "v6 /docs/a.json", "a regex ahead of a longer prefix");
    assert.equal((await get(port, "/docs/a")).body, "v4 /docs/a");
    assert.equal((await get(port, "/api/a")).body, "v6 /api/a");
    assert.equal((await get(port, "/other")).status, 404);
    const redirect = await get(port, "/docs?page=2");
    assert.equal(redirect.status, 301);
    assert.equal(redirect.location, `http://t.test:${PUBLIC_PORT}/docs/?page=2`, "to the public port, the query kept");
    assert.equal((await get(port, "/api")).location, `http://t.test:${PUBLIC_PORT}/api/`);
  });

  test("a request without an id gets a fresh one: 32 hex digits, passed to the backend, answered and logged; a reload's worker draws a new random part", async () => {
    await adopt([["prefix", "/", "web"]], { t_web_prod: [v4Address] });
    const answers = [];
    for (let i = 0; i < 40; i++) answers.push(await getWithIds(port, "/x"));
    const ids = answers.map((answer) => answer.requestId ?? "");
    for (const answer of answers) {
      assert.match(answer.requestId ?? "", /^[0-9a-f]{32}$/);
      assert.equal(answer.seenId, answer.requestId, "the backend got the id the client was answered with");
    }
    assert.equal(new Set(ids).size, ids.length, "no id given twice");
    const prefixes = new Set(ids.map((id) => id.slice(0, 24)));
    assert.equal(prefixes.size, 1, "one worker: one random part");
    // The last 8 digits come from the worker's count, mixed: consecutive requests do not show it.
    const counts = ids.map((id) => Number.parseInt(id.slice(24), 16));
    assert.ok(counts.some((count, i) => i > 0 && count !== counts[i - 1]! + 1), `the count shows through: ${ids.slice(0, 3).join(", ")}`);
    assert.equal((await get(port, "/__ids")).body, "0 200000", "200,000 ids from one worker: none malformed, all distinct");

    // The client's id when it looks like one; a malformed one is replaced.
    assert.deepEqual(await getWithIds(port, "/x", "client-id.42:a_b"), { status: 200, body: "v4 /x", requestId: "client-id.42:a_b", seenId: "client-id.42:a_b" });
    const replaced = await getWithIds(port, "/x", "no spaces; please");
    assert.match(replaced.requestId ?? "", /^[0-9a-f]{32}$/);
    assert.equal(replaced.seenId, replaced.requestId);

    // The unavailable page is an internal redirect, which runs the server's line again: the id
    // already passed upstream still answers and is logged. This backend reads the request, keeps
    // the id it got, and drops the connection unanswered: nginx answers 502.
    const seenByDropping: unknown[] = [];
    const dropping = createServer((req) => {
      seenByDropping.push(req.headers["x-request-id"]);
      req.socket.destroy();
    });
    await new Promise<void>((resolve) => dropping.listen(0, "127.0.0.1", resolve));
    await adopt([["prefix", "/", "web"]], { t_web_prod: [`127.0.0.1:${(dropping.address() as AddressInfo).port}`] });
    const unavailable = await getWithIds(port, "/y");
    await new Promise((resolve) => dropping.close(resolve));
    assert.equal(unavailable.status, 502);
    assert.match(unavailable.requestId ?? "", /^[0-9a-f]{32}$/);
    assert.deepEqual(seenByDropping, [unavailable.requestId], "the backend got the id the 502 answered with");
    // nginx writes the log line after the answer: wait for it.
    let log = await accessLog((text) => text.includes(`${unavailable.requestId} 502\n`));
    assert.ok(log.includes(`${unavailable.requestId} 502\n`), `the 502 is logged with the id it answered with:\n${log.slice(-500)}`);
    for (const id of ids) assert.ok(log.includes(`${id} 200\n`), `${id} is logged`);

    // A request nginx refuses before any server runs (a malformed request line) has no id of the
    // router's; nginx's own names it in the log.
    const refused = await new Promise<string>((resolve, reject) => {
      const socket = connect(port, "127.0.0.1", () => socket.end("NOT A REQUEST\r\n\r\n"));
      let answer = "";
      socket.on("data", (chunk: Buffer) => (answer += chunk.toString()));
      socket.on("end", () => resolve(answer));
      socket.on("error", reject);
    });
    assert.match(refused, /^HTTP\/1\.1 400/);
    log = await accessLog((text) => /\n[0-9a-f]{32} 400\n$/.test(text));
    assert.match(log, /\n[0-9a-f]{32} 400\n$/, "the refused request is logged with an id");

    // A reload replaces the worker; the new one draws its own random part.
    nginx!.kill("SIGHUP");
    let after = "";
    for (const deadline = Date.now() + 5000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 50))) {
      after = (await getWithIds(port, "/z")).requestId ?? "";
      if (after.slice(0, 24) !== ids[0]!.slice(0, 24)) break;
    }
    assert.match(after, /^[0-9a-f]{32}$/);
    assert.notEqual(after.slice(0, 24), ids[0]!.slice(0, 24), "the reloaded worker draws a new random part");
  });
});
