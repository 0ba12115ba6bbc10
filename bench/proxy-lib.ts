// What the two proxy benches share: the bench platform and its one app, the hand-written nginx
// they are compared with, and the edit that takes the router out of berth's rendered
// configuration. proxy-throughput.ts runs them in containers, proxy-cost.ts on the host.
import { BACKENDS_UPSTREAM } from "../src/proxy/nginx-conf.js";
import { configFiles } from "../src/proxy/render.js";

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
/** The app's site file in a rendered generation. */
export const BENCH_SITE = configFiles.site("benchtp");

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

/** One change to a rendered file; the pattern must match, or the edit no longer means what it says. */
export interface Edit {
  file: string;
  pattern: RegExp;
  replacement: string;
}

/**
 * berth's configuration with the router taken out: the site names the upstream and its rate-limit
 * class, nginx.conf the backend's address, as a configuration rendered without routes-as-data
 * would. Logs, headers, request ids (still the router's Lua) and limits stay.
 */
export function fixedRouteEdits(upstream: string, backend: string): Edit[] {
  return [
    {
      file: configFiles.nginxConf,
      pattern: new RegExp(`upstream ${BACKENDS_UPSTREAM} \\{[^}]*\\{[^}]*\\}[^}]*\\}`),
      replacement: `upstream ${BACKENDS_UPSTREAM} { server ${backend}; keepalive 256; }`,
    },
    {
      file: BENCH_SITE,
      pattern: /set_by_lua_block \$berth_upstream \{[^}]*\}/,
      replacement: `set $berth_upstream ${upstream};\n        set $berth_route_limit general;`,
    },
  ];
}

/** Applies edits to rendered files (path -> text) in place; throws naming the target when a pattern no longer matches. */
export function applyEdits(config: Record<string, string>, edits: Edit[], target: string): void {
  for (const { file, pattern, replacement } of edits) {
    const text = config[file];
    if (text === undefined) throw new Error(`${target}: berth rendered no ${file}`);
    if (text.search(pattern) < 0) throw new Error(`${target}: ${pattern} not found in ${file}: the rendered configuration changed, update the edit`);
    config[file] = text.replace(pattern, replacement);
  }
}
