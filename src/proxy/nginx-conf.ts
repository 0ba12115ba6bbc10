// The main file of a generation: process settings, what every server shares (logs, request
// ids, rate-limit zones, compression, TLS, the upstream and its transport), the server for unknown hosts,
// and the sites. Rendered files are included by relative paths, which nginx resolves from the
// directory of the -c file: the same text works in a staged generation and behind `current`.
import type { PlatformPlan } from "../plan/types.js";
import { proxyHeaders } from "./includes.js";
import { configFiles, type ProxyPaths } from "./layout.js";
import { block, DOLLAR_VARIABLE, renderConfig, word, type ConfigLine } from "./syntax.js";

/** Fields of the JSON access log; app and env come from the `set` of each server. */
export const ACCESS_LOG_FIELDS: [string, string][] = [
  ["time", '"$time_iso8601"'],
  ["app", '"$berth_app"'],
  ["env", '"$berth_env"'],
  ["host", '"$host"'],
  ["method", '"$request_method"'],
  ["uri", '"$request_uri"'],
  ["status", "$status"],
  ["bytes", "$body_bytes_sent"],
  ["request_time", "$request_time"],
  ["upstream_response_time", '"$upstream_response_time"'],
  ["upstream_addr", '"$upstream_addr"'],
  ["request_id", '"$berth_request_id"'],
  ["remote_addr", '"$remote_addr"'],
  ["user_agent", '"$http_user_agent"'],
];

/** Files the proxy answers with long cache headers. */
export const STATIC_ASSET_EXTENSIONS = ["js", "css", "png", "jpg", "jpeg", "gif", "ico", "svg", "woff", "woff2"];

export const GZIP_TYPES = ["text/plain", "text/css", "text/javascript", "application/javascript", "application/json", "image/svg+xml"];

/** Mozilla's "intermediate" TLS 1.2 suites (ECDHE only: no dhparam file to manage). */
const TLS12_CIPHERS = [
  "ECDHE-ECDSA-AES128-GCM-SHA256",
  "ECDHE-RSA-AES128-GCM-SHA256",
  "ECDHE-ECDSA-AES256-GCM-SHA384",
  "ECDHE-RSA-AES256-GCM-SHA384",
  "ECDHE-ECDSA-CHACHA20-POLY1305",
  "ECDHE-RSA-CHACHA20-POLY1305",
];

/** Lua for nginx (Debian's libnginx-mod-http-lua and the NDK it needs), as the proxy image installs them. */
export const LUA_MODULES = ["/usr/lib/nginx/modules/ndk_http_module.so", "/usr/lib/nginx/modules/ngx_http_lua_module.so"];

/** How nginx.conf includes the sites; a narrower check of one changed site replaces this line. */
export const SITES_INCLUDE = "sites/*.conf";

export function renderNginxConf(plan: PlatformPlan, paths: ProxyPaths): string {
  return renderConfig([
    `# Proxy of berth platform "${plan.platform}". Rendered by berth; do not edit: the next apply replaces it.`,
    ...LUA_MODULES.map((module) => `load_module ${module};`),
    "worker_processes auto;",
    "worker_rlimit_nofile 8192;",
    "# The regexes every request meets (the asset cache map, regex routes) run as machine code.",
    "pcre_jit on;",
    `pid ${word(paths.pid)};`,
    `error_log ${word(paths.errorLog)} warn;`,
    "",
    block("events", ["worker_connections 4096;"]),
    "",
    block("http", [
      ...basics(),
      "",
      ...requestIds(),
      "",
      ...accessLog(paths),
      "",
      ...router(paths),
      "",
      ...rateLimits(plan),
      "",
      ...compression(),
      "",
      ...responseMaps(),
      "",
      ...tls(),
      "",
      ...upstreamTransport(),
      "",
      unknownHostServer(),
      "",
      `include ${configFiles.generation};`,
      "",
      `include ${SITES_INCLUDE};`,
    ]),
  ]);
}

function basics(): ConfigLine[] {
  return [
    "server_tokens off;",
    "default_type application/octet-stream;",
    "sendfile on;",
    "tcp_nopush on;",
    "keepalive_timeout 65s;",
    // Long domain names and many of them: nginx refuses to start when its name hash overflows.
    "server_names_hash_bucket_size 128;",
    "server_names_hash_max_size 4096;",
    "# Variables a server sets stay empty where it did not run: $berth_app and $berth_env for requests",
    "# no tenant server answered.",
    "uninitialized_variable_warn off;",
  ];
}

/** The variable holding the id the router made for the request (used when the client sent none). */
const GENERATED_REQUEST_ID = "berth_generated_id";

/**
 * The id a request is logged, proxied and answered with: the client's, or the one its server made
 * (requestIdLine). The "" entry spares a request without the header the regex.
 *
 * The router's id is also a map's variable, so it always has a value. Every server sets it first
 * thing, and nginx keeps the value a server set over the map's. A request nginx answers before
 * any server's directives run (a malformed request line or header, plain HTTP on the TLS port)
 * gets nginx's own $request_id from the map, read only then. Every other request costs the map
 * nothing: its value is not looked up where a server set one.
 */
export function requestIds(): ConfigLine[] {
  return [
    "# A client's X-Request-ID is kept when it looks like an id; otherwise the router makes one.",
    block("map $http_x_request_id $berth_request_id", [
      `default $${GENERATED_REQUEST_ID};`,
      `"" $${GENERATED_REQUEST_ID};`,
      '"~^[A-Za-z0-9._:-]{1,128}$" $http_x_request_id;',
    ]),
    "# Set by every server (the router's id); this value only where no server ran.",
    block(`map "" $${GENERATED_REQUEST_ID}`, ["default $request_id;"]),
  ];
}

/**
 * The server-level line that gives each request of a server a fresh id (router-lua.ts says how
 * it is made): cheaper than nginx's $request_id, which asks OpenSSL for random bytes each time.
 */
export function requestIdLine(): string {
  return `set_by_lua_block $${GENERATED_REQUEST_ID} { return berth_router.request_id() }`;
}

function accessLog(paths: ProxyPaths): ConfigLine[] {
  // One quoted part per field; nginx joins them into one JSON object per request.
  const fields = ACCESS_LOG_FIELDS.map(([name, value]) => `"${name}":${value}`);
  const parts = fields.map((field, index) => `    '${index === 0 ? "{" : ""}${field}${index === fields.length - 1 ? "}" : ","}'`);
  // Buffered: one write per 64 KiB or per second instead of one per request (flushed on reload and exit too).
  return [`log_format berth_json escape=json\n${parts.join("\n")};`, `access_log ${word(paths.accessLog)} berth_json buffer=64k flush=1s;`];
}

/**
 * The router (router-lua.ts): nginx's master loads its code and the live route table with the
 * configuration, each worker then watches the table. Paths go through `current`, so a reload
 * loads the generation it swapped to. A table's regexes are compiled once per worker and kept.
 */
function router(paths: ProxyPaths): ConfigLine[] {
  const options = [
    `live = "${paths.live}/${configFiles.routeTable}"`,
    `generations = "${paths.generations}"`,
    `file = "${configFiles.routeTable}"`,
  ];
  return [
    "# Routes are data: the router gives each request its upstream and rate-limit class from the route table.",
    "lua_shared_dict berth_router 64k;",
    "lua_regex_cache_max_entries 8192;",
    block("init_by_lua_block", [
      `berth_router = dofile("${paths.live}/${configFiles.router}")`,
      `berth_router.start({ ${options.join(", ")} })`,
    ]),
    block("init_worker_by_lua_block", ["berth_router.watch()"]),
  ];
}

/**
 * One zone per rate-limit class of the platform, keyed by client address for the requests whose
 * route has that class and by nothing (so not counted) for the others: the router names the
 * class in $berth_route_limit, and every routed location applies every class.
 */
function rateLimits(plan: PlatformPlan): ConfigLine[] {
  return [
    ...Object.entries(plan.proxy.rateLimits).flatMap(([name, { rate }]) => [
      `limit_req_zone $${limitKey(name)} zone=${name}:10m rate=${rate}r/s;`,
      block(`map $berth_route_limit $${limitKey(name)}`, [`${name} $binary_remote_addr;`, 'default "";']),
    ]),
    "# berth's own checks of a staged route table, from the generation server.",
    "limit_req_zone $server_name zone=berth_check:64k rate=20r/s;",
    "limit_req_status 429;",
  ];
}

/** The variable a class's zone is keyed by; class names may hold "-", which no nginx variable name can (they never hold "_"). */
export function limitKey(name: string): string {
  return `berth_limit_${name.replaceAll("-", "_")}`;
}

function compression(): ConfigLine[] {
  return [
    "gzip on;",
    "gzip_comp_level 6;",
    "gzip_vary on;",
    "gzip_proxied any;",
    `gzip_types ${GZIP_TYPES.join(" ")};`,
  ];
}

function responseMaps(): ConfigLine[] {
  return [
    "# Long caching for static assets; an empty value makes add_header add nothing.",
    block("map $uri $berth_asset_cache_control", [
      'default "";',
      `"~*\\.(${STATIC_ASSET_EXTENSIONS.join("|")})$" "public, max-age=604800, immutable";`,
    ]),
    "# WebSocket upgrades pass through; other requests send no Connection header, keeping upstream connections alive.",
    block("map $http_upgrade $berth_connection_upgrade", ["default upgrade;", '"" "";']),
    "# A literal '$' for header values: nginx strings have no escape for it.",
    block(`geo $${DOLLAR_VARIABLE}`, ['default "$";']),
  ];
}

function tls(): ConfigLine[] {
  return [
    "ssl_protocols TLSv1.2 TLSv1.3;",
    `ssl_ciphers ${TLS12_CIPHERS.join(":")};`,
    "ssl_prefer_server_ciphers off;",
    "ssl_session_cache shared:berth_tls:10m;",
    "ssl_session_timeout 1d;",
    "ssl_session_tickets off;",
  ];
}

/** The one upstream every routed request goes to; the router's balancer picks the address. */
export const BACKENDS_UPSTREAM = "berth_backends";

/** Connections each worker keeps open to containers, over all of them (least recently used go first). */
const UPSTREAM_KEEPALIVE = 256;

function upstreamTransport(): ConfigLine[] {
  return [
    "# Addresses are data (the route table): a deploy's switch or a restarted container changes no",
    "# configuration. The server line only satisfies nginx; the balancer never sends to it.",
    block(`upstream ${BACKENDS_UPSTREAM}`, [
      "server 0.0.0.1:1;",
      "balancer_by_lua_block { berth_router.balance() }",
      `keepalive ${UPSTREAM_KEEPALIVE};`,
    ]),
    "",
    "# HTTP/1.1 for keepalive and WebSockets; a replica that refuses or times out is skipped.",
    "proxy_http_version 1.1;",
    "proxy_connect_timeout 5s;",
    "proxy_next_upstream error timeout;",
    "# Request headers for every upstream, and the app's own X-Request-ID dropped (each server answers with",
    "# the request's id); no location sets its own, so all inherit these.",
    ...proxyHeaders(),
  ];
}

/**
 * Catches every Host no environment declares, so an unknown name never gets some tenant's
 * site (nginx would otherwise pick the first server on the port). On 443 the handshake is
 * refused: no certificate is needed, and none is shown.
 */
function unknownHostServer(): ConfigLine {
  return block("server", [
    "listen 80 default_server;",
    "listen 443 ssl http2 default_server;",
    "server_name _;",
    "ssl_reject_handshake on;",
    requestIdLine(),
    "return 421;",
  ]);
}

/** Host name of the generation server: a tenant's domain cannot contain "_". */
export const GENERATION_HOST = "_berth-generation";

/**
 * A server that answers requests naming its host with the token of the route table every worker
 * runs (a hash of it and of the rest of the configuration; "pending" while workers differ): berth
 * reads it after a reload or a new route table, and the new token means every new connection
 * meets it. At /route-table?generation=N it answers whether a staged generation's table parses
 * ("fits" the running configuration, or is for "other-configuration"; else 422 and why), which
 * nginx -t cannot tell. Not logged; it reveals nothing but the hash and berth's own checks.
 */
export function renderGenerationConf(): string {
  return renderConfig([
    "# Rendered by berth; do not edit. Answers berth's questions about the route table the workers run.",
    block("server", [
      "listen 80;",
      `server_name ${GENERATION_HOST};`,
      "access_log off;",
      "default_type text/plain;",
      "",
      block("location /", ["content_by_lua_block { berth_router.answer_token() }"]),
      "",
      block("location = /route-table", ["limit_req zone=berth_check burst=20;", "content_by_lua_block { berth_router.answer_check() }"]),
    ]),
  ]);
}
