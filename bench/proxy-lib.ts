// What the two proxy benches share: the bench platform and its one app, and the hand-written
// nginx configurations berth's proxy is compared with. proxy-throughput.ts runs them in
// containers, proxy-cost.ts on the host.

export const BENCH_IMAGE = "berth-bench/paiss-web:latest";
export const BENCH_DOMAIN = "benchtp.localhost";
/** The static site's small answer (3 bytes); the site itself does not log this path. */
export const BENCH_PATH = "/health.txt";
export const BENCH_HTTP_PORT = 28080;
export const BENCH_HTTPS_PORT = 28443;

// Rate limits high enough never to answer 429 to wrk: the benches measure proxying, not limiting.
export const BENCH_PLATFORM = `name: benchtp
proxy:
  bind: 127.0.0.1
  httpPort: ${BENCH_HTTP_PORT}
  httpsPort: ${BENCH_HTTPS_PORT}
  image: berth-nginx:1.22
  rateLimits: { general: { rate: 100000, burst: 100000 } }
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
/** berth's default Content-Security-Policy, which the bench app does not override. */
const CSP = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'self'";

/**
 * The baseline: what one would write by hand to proxy to one backend with upstream keepalive.
 * `listen` is "80" in a container, "127.0.0.1:PORT" on the host.
 */
export function minimalNginxConf(options: { listen: string; backend: string; pid: string }): string {
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
 * What a hand-written nginx gives every request besides proxying it, at one of two levels.
 * - "required": only what a platform proxy owes every request: X-Real-IP, X-Forwarded-For/Proto/
 *   Host; an X-Request-ID (the client's, else nginx's $request_id) passed upstream and logged;
 *   the security headers; a rate limit per client IP; gzip; long caching for static assets; a
 *   buffered JSON access log of app, environment, status, upstream time and request id.
 * - "berth": everything berth's proxy gives every request, with the same values: the above,
 *   plus X-Forwarded-Port, WebSocket upgrades, the id checked before it is trusted and answered
 *   to the client, and the access log's other fields (host, method, URI, bytes, request time,
 *   upstream address, client address, user agent).
 * Written the usual way: nginx's own $request_id, and the one upstream named in the
 * configuration (no router). Against the minimal configuration, "required" is what those
 * duties cost in any nginx; against "berth", berth is what its own way of giving them costs.
 */
export function handWrittenNginxConf(level: "required" | "berth", options: { listen: string; backend: string; pid: string; accessLog: string }): string {
  const berth = level === "berth";
  const only = (lines: string[]) => (berth ? lines : []);
  const logFields = berth
    ? ["time", "app", "env", "host", "method", "uri", "status", "bytes", "request_time", "upstream_response_time", "upstream_addr", "request_id", "remote_addr", "user_agent"]
    : ["time", "app", "env", "status", "upstream_response_time", "request_id"];
  const logValues: Record<string, string> = {
    time: '"$time_iso8601"',
    app: '"benchtp"',
    env: '"production"',
    host: '"$host"',
    method: '"$request_method"',
    uri: '"$request_uri"',
    status: "$status",
    bytes: "$body_bytes_sent",
    request_time: "$request_time",
    upstream_response_time: '"$upstream_response_time"',
    upstream_addr: '"$upstream_addr"',
    request_id: '"$req_id"',
    remote_addr: '"$remote_addr"',
    user_agent: '"$http_user_agent"',
  };
  const log = `{${logFields.map((field) => `"${field}":${logValues[field]}`).join(",")}}`;
  return [
    "worker_processes auto;",
    "pcre_jit on;",
    `pid ${options.pid};`,
    "error_log stderr warn;",
    "events { worker_connections 4096; }",
    "http {",
    berth
      ? '  map $http_x_request_id $req_id { default $request_id; "" $request_id; "~^[A-Za-z0-9._:-]{1,128}$" $http_x_request_id; }'
      : '  map $http_x_request_id $req_id { default $http_x_request_id; "" $request_id; }',
    `  log_format json escape=json '${log}';`,
    `  access_log ${options.accessLog} json buffer=64k flush=1s;`,
    "  limit_req_zone $binary_remote_addr zone=general:10m rate=100000r/s;",
    "  limit_req_status 429;",
    "  gzip on;",
    "  gzip_comp_level 6;",
    "  gzip_vary on;",
    "  gzip_proxied any;",
    "  gzip_types text/plain text/css text/javascript application/javascript application/json image/svg+xml;",
    '  map $uri $asset_cache { default ""; "~*\\.(js|css|png|jpg|jpeg|gif|ico|svg|woff|woff2)$" "public, max-age=604800, immutable"; }',
    ...only(['  map $http_upgrade $connection_upgrade { default upgrade; "" ""; }']),
    `  upstream backend { server ${options.backend}; keepalive 32; }`,
    "  server {",
    `    listen ${options.listen} default_server;`,
    '    add_header X-Frame-Options "SAMEORIGIN" always;',
    '    add_header X-Content-Type-Options "nosniff" always;',
    '    add_header Referrer-Policy "strict-origin-when-cross-origin" always;',
    `    add_header Content-Security-Policy "${CSP}" always;`,
    ...only(["    add_header X-Request-ID $req_id always;"]),
    "    add_header Cache-Control $asset_cache;",
    "    location / {",
    "      limit_req zone=general burst=100000 nodelay;",
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
