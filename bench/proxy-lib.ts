// What the two proxy benches share: the bench platform and its one app, and the hand-written
// nginx configurations berth's proxy is compared with. proxy-throughput.ts runs them in
// containers, proxy-cost.ts on the host.
import { mkdir, symlink, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { names } from "../src/plan/names.js";
import type { PlatformPlan } from "../src/plan/types.js";
import { ACCESS_LOG_FIELDS, GZIP_TYPES, LUA_MODULES, STATIC_ASSET_EXTENSIONS } from "../src/proxy/nginx-conf.js";
import { configFiles, renderProxyConfig, type ProxyPaths } from "../src/proxy/render.js";
import { planFromTexts } from "./lib.js";

export const BENCH_IMAGE = "berth-bench/paiss-web:latest";
export const BENCH_DOMAIN = "benchtp.localhost";
/** The static site's small answer (3 bytes); the site itself does not log this path. */
export const BENCH_PATH = "/health.txt";
export const BENCH_HTTP_PORT = 28080;
export const BENCH_HTTPS_PORT = 28443;

/** Requests/s and burst of the bench's rate limit: high enough never to answer 429 to wrk (the benches measure proxying, not limiting). */
const BENCH_RATE = 100000;

export const BENCH_PLATFORM = `name: benchtp
proxy:
  bind: 127.0.0.1
  httpPort: ${BENCH_HTTP_PORT}
  httpsPort: ${BENCH_HTTPS_PORT}
  image: berth-nginx:1.22
  rateLimits: { general: { rate: ${BENCH_RATE}, burst: ${BENCH_RATE} } }
tls: { mode: off }
`;
export const BENCH_APP = `name: benchtp
components:
  web: { image: ${BENCH_IMAGE}, port: 8080, health: ${BENCH_PATH} }
routes:
  - { path: /, to: web }
environments:
  production: { domains: [${BENCH_DOMAIN}] }
`;
/** The bench app's response headers as berth plans them (its defaults: the app sets none). */
const BENCH_HEADERS = planFromTexts(BENCH_PLATFORM, { benchtp: BENCH_APP }).environments[0]!.headers;

/** Where a hand-written nginx listens ("80" in a container, "127.0.0.1:PORT" on the host), proxies to, and keeps its pid and access log. */
export interface HandWrittenOptions {
  listen: string;
  backend: string;
  pid: string;
  accessLog: string;
}

/**
 * The baseline: what one would write by hand to proxy to one backend with upstream keepalive.
 */
export function minimalNginxConf(options: Omit<HandWrittenOptions, "accessLog">): string {
  return `worker_processes auto;
pid ${options.pid};
error_log stderr warn;
events { worker_connections 4096; }
http {
  access_log off;
  upstream backend { server ${options.backend}; keepalive 32; }
  server {
    listen ${options.listen} default_server;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
    }
  }
}
`;
}

/**
 * The id the "required" configuration gives a request that came without one: unique while nginx
 * runs ($connection counts the connections of all workers, $connection_requests the requests of
 * one), and across restarts by the pid and the time.
 */
const REQUIRED_ID = '"$pid-$msec-$connection-$connection_requests"';

/** The log fields a platform proxy owes every request (the "required" levels log only these). */
const REQUIRED_LOG_FIELDS = ["time", "app", "env", "status", "upstream_response_time", "request_id"];

/**
 * What a hand-written nginx gives every request besides proxying it, at one of three levels.
 * - "required": only what a platform proxy owes every request, each the cheapest way stock nginx
 *   has: X-Real-IP, X-Forwarded-For/Proto/Host; an X-Request-ID passed upstream and logged (the
 *   client's, else one made of nginx's pid, clock and connection counters, REQUIRED_ID: unique
 *   without drawing random bytes, as $request_id does for each request); the security headers;
 *   a rate limit per client IP; gzip; long caching for static assets; a buffered JSON access log
 *   of app, environment, status, upstream time and request id.
 * - "required+lua": the same, with routes and addresses as data at the least cost nginx's Lua
 *   module allows: a set_by_lua names the request's upstream and a balancer_by_lua gives the
 *   address, both answering a constant where a router looks them up. A proxy that serves a route
 *   change or a deploy's switch without a reload (which takes seconds with 1000 apps on this kind
 *   of machine) pays at least these two calls on top of the required duties.
 * - "berth": everything berth's proxy gives every request, with the same values: the above,
 *   plus X-Forwarded-Port, WebSocket upgrades, the id checked before it is trusted and answered
 *   to the client, and the access log's other fields (host, method, URI, bytes, request time,
 *   upstream address, client address, user agent).
 * "berth" is written the usual way: nginx's own $request_id. Only "required+lua" has anything
 * of a router: the others name the one upstream in the configuration. Against the minimal configuration, "required" is the
 * least those duties cost in any nginx; against "berth", berth is what its own way of giving the
 * same costs.
 */
export function handWrittenNginxConf(level: "required" | "required+lua" | "berth", options: HandWrittenOptions): string {
  const berth = level === "berth";
  const only = (lines: string[]) => (berth ? lines : []);
  const lua = level === "required+lua";
  const address = /^(.+):(\d+)$/.exec(options.backend);
  if (!address) throw new Error(`backend ${options.backend}: expected host:port`);
  // berth's log fields, with the values a hand-written configuration has in its place.
  const own: Record<string, string> = { app: '"benchtp"', env: '"production"', request_id: '"$req_id"' };
  const fields = ACCESS_LOG_FIELDS.filter(([name]) => berth || REQUIRED_LOG_FIELDS.includes(name)).map(([name, value]) => `"${name}":${own[name] ?? value}`);
  const log = `{${fields.join(",")}}`;
  return [
    ...(lua ? LUA_MODULES.map((module) => `load_module ${module};`) : []),
    "worker_processes auto;",
    "pcre_jit on;",
    `pid ${options.pid};`,
    "error_log stderr warn;",
    "events { worker_connections 4096; }",
    "http {",
    berth
      ? '  map $http_x_request_id $req_id { default $request_id; "" $request_id; "~^[A-Za-z0-9._:-]{1,128}$" $http_x_request_id; }'
      : `  map $http_x_request_id $req_id { default $http_x_request_id; "" ${REQUIRED_ID}; }`,
    `  log_format json escape=json '${log}';`,
    `  access_log ${options.accessLog} json buffer=64k flush=1s;`,
    `  limit_req_zone $binary_remote_addr zone=general:10m rate=${BENCH_RATE}r/s;`,
    "  limit_req_status 429;",
    "  gzip on;",
    "  gzip_comp_level 6;",
    "  gzip_vary on;",
    "  gzip_proxied any;",
    `  gzip_types ${GZIP_TYPES.join(" ")};`,
    `  map $uri $asset_cache { default ""; "~*\\.(${STATIC_ASSET_EXTENSIONS.join("|")})$" "public, max-age=604800, immutable"; }`,
    ...only(['  map $http_upgrade $connection_upgrade { default upgrade; "" ""; }']),
    ...(lua
      ? [
          '  init_by_lua_block { balancer = require("ngx.balancer") }',
          `  upstream backend { server 0.0.0.1:1; balancer_by_lua_block { balancer.set_current_peer("${address[1]}", ${address[2]}) } keepalive 32; }`,
        ]
      : [`  upstream backend { server ${options.backend}; keepalive 32; }`]),
    "  server {",
    `    listen ${options.listen} default_server;`,
    `    add_header X-Frame-Options "${BENCH_HEADERS.frameOptions}" always;`,
    '    add_header X-Content-Type-Options "nosniff" always;',
    `    add_header Referrer-Policy "${BENCH_HEADERS.referrerPolicy}" always;`,
    `    add_header Content-Security-Policy "${BENCH_HEADERS.csp}" always;`,
    ...only(["    add_header X-Request-ID $req_id always;"]),
    "    add_header Cache-Control $asset_cache;",
    "    location / {",
    `      limit_req zone=general burst=${BENCH_RATE} nodelay;`,
    ...(lua ? ['      set_by_lua_block $upstream { return "backend" }'] : []),
    "      proxy_pass http://backend;",
    "      proxy_http_version 1.1;",
    "      proxy_set_header Host $host;",
    "      proxy_set_header X-Real-IP $remote_addr;",
    "      proxy_set_header X-Forwarded-For $remote_addr;",
    "      proxy_set_header X-Forwarded-Proto $scheme;",
    "      proxy_set_header X-Forwarded-Host $host;",
    ...only([`      proxy_set_header X-Forwarded-Port ${BENCH_HTTP_PORT};`]),
    "      proxy_set_header X-Request-ID $req_id;",
    ...(berth ? ["      proxy_set_header Upgrade $http_upgrade;", "      proxy_set_header Connection $connection_upgrade;"] : ['      proxy_set_header Connection "";']),
    "    }",
    "  }",
    "}",
    "",
  ].join("\n");
}

/** The app's site file in a rendered generation. */
export const BENCH_SITE = configFiles.site("benchtp");

/** One change to a rendered file; the pattern must match, or the edit no longer means what it says. */
export interface Edit {
  file: string;
  pattern: RegExp;
  replacement: string;
}

/** Applies edits to rendered files (path -> text) in place; throws naming the target when a pattern no longer matches. */
function applyEdits(config: Record<string, string>, edits: Edit[], target: string): void {
  for (const { file, pattern, replacement } of edits) {
    const text = config[file];
    if (text === undefined) throw new Error(`${target}: berth rendered no ${file}`);
    if (text.search(pattern) < 0) throw new Error(`${target}: ${pattern} not found in ${file}: the rendered configuration changed, update the edit`);
    config[file] = text.replace(pattern, replacement);
  }
}

/**
 * berth's rendered configuration cut down to the duties of handWrittenNginxConf("required"), the
 * router kept: the access log holds the required fields only, and the extras berth gives every
 * request go (the id answered to the client, X-Forwarded-Port, WebSocket upgrades). Routes,
 * addresses and request ids still come from berth's Lua router. Against the "required" row, it is
 * what keeping routes and addresses as data (a route change or a deploy's switch without a reload)
 * costs a proxy that does nothing else beyond its duties.
 */
export function requiredDutiesEdits(): Edit[] {
  const fields = ACCESS_LOG_FIELDS.filter(([name]) => REQUIRED_LOG_FIELDS.includes(name)).map(([name, value]) => `"${name}":${value}`);
  return [
    { file: configFiles.nginxConf, pattern: /log_format berth_json escape=json[^;]*;/, replacement: `log_format berth_json escape=json '{${fields.join(",")}}';` },
    { file: configFiles.nginxConf, pattern: /^[ \t]*proxy_set_header (X-Forwarded-Port|Upgrade) [^\n]*\n/gm, replacement: "" },
    { file: configFiles.nginxConf, pattern: /proxy_set_header Connection \$berth_connection_upgrade;/, replacement: 'proxy_set_header Connection "";' },
    { file: BENCH_SITE, pattern: /^[ \t]*add_header X-Request-ID [^\n]*\n/m, replacement: "" },
  ];
}

/** The bench app's one upstream (its only component, in its only environment). */
export function benchUpstream(plan: PlatformPlan): string {
  const environment = plan.environments[0]!;
  return names.upstream(environment.app, environment.env, environment.components[0]!.name);
}

/** Where berth's generation of the bench app lives and what it sends to (writeBerthGeneration). */
export interface BerthGenerationOptions {
  /** Where nginx sees `dir`: the same directory on the host (the default), or where a container mounts it. */
  prefix?: string;
  /** The directory of the access and error logs as nginx sees it; by default `logs` under the prefix, made here. */
  logs?: string;
  pid?: string;
  /** The bench app's one upstream address, host:port. */
  backend: string;
  edits: Edit[];
  /** Named in the error when an edit no longer matches. */
  target: string;
}

/**
 * berth's generation of the bench app, rendered and edited, written under `dir` in the proxy
 * container's layout (gen/1 behind `current`, pages, ACME webroot); returns its paths as nginx
 * sees them (its main file is `nginx.conf` in `live`).
 */
export async function writeBerthGeneration(dir: string, options: BerthGenerationOptions): Promise<ProxyPaths> {
  const prefix = options.prefix ?? dir;
  const logs = options.logs ?? join(prefix, "logs");
  const paths: ProxyPaths = {
    certs: join(prefix, "certs"),
    pages: join(prefix, "pages"),
    acmeWebroot: join(prefix, "acme"),
    accessLog: join(logs, "access.log"),
    errorLog: join(logs, "error.log"),
    pid: options.pid ?? join(prefix, "nginx.pid"),
    live: join(prefix, "current"),
    generations: join(prefix, "gen"),
  };
  const plan = planFromTexts(BENCH_PLATFORM, { benchtp: BENCH_APP });
  const rendered = renderProxyConfig(plan, { upstreams: { [benchUpstream(plan)]: [options.backend] }, certificates: {} }, paths);
  applyEdits(rendered.config, options.edits, options.target);
  const write = async (path: string, content: string) => {
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, content);
  };
  for (const [path, content] of Object.entries(rendered.config)) await write(join(dir, "gen/1", path), content);
  for (const [path, content] of Object.entries(rendered.pages)) await write(join(dir, "pages", path), content);
  await symlink("gen/1", join(dir, "current"));
  await mkdir(join(dir, "acme/.well-known/acme-challenge"), { recursive: true });
  if (options.logs === undefined) await mkdir(join(dir, "logs"), { recursive: true });
  return paths;
}
