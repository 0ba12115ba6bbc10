// The proxy renderer: exact files for a small app, then properties that must hold for the
// reference platform under every kind of observation.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { PlatformPlan } from "../../src/plan/types.js";
import {
  configFiles,
  DEFAULT_PROXY_PATHS,
  GENERATION_HOST,
  pageFiles,
  renderProxyConfig,
  type ProxyObserved,
  type RenderedProxy,
} from "../../src/proxy/render.js";
import { renderRouteTable } from "../../src/proxy/route-table.js";
import { ROUTER_LUA } from "../../src/proxy/router-lua.js";
import { quoted, quotedText } from "../../src/proxy/syntax.js";
import { everythingObserved, parseNginx, planFromTexts, referencePlan, walk, type Directive } from "./proxy-fixtures.js";

const platformYaml = (tls: string, httpsPort = 8443) => `
name: test
proxy:
  httpPort: 8080
  httpsPort: ${httpsPort}
  rateLimits:
    general: { rate: 100, burst: 50 }
    api: { rate: 20, burst: 10 }
tls: { mode: ${tls} }
`;

const SHOP_YAML = `
name: shop
components:
  web: { image: "shop-web:1", port: 8080 }
  api: { image: "shop-api:1", port: 3000, replicas: 2 }
routes:
  - { path: "^/api/v[0-9]+\\\\.json", to: api, limit: api }
  - { path: /static/, to: web }
  - { path: /, to: web }
headers:
  csp: "default-src 'self'"
  frameOptions: DENY
  hsts: { maxAge: 24h, includeSubdomains: true }
environments:
  production: { domains: [shop.example, www.shop.example] }
  staging: { domains: [staging.shop.example], maintenance: true }
`;

/** Production's API has two healthy replicas, its web none; only production has a certificate. */
const SHOP_OBSERVED: ProxyObserved = {
  upstreams: { shop_api_production: ["10.0.1.3:3000", "10.0.1.2:3000"] },
  certificates: { "shop/production": true },
};

const shopPlan = (tls = "self-signed", httpsPort = 8443) => planFromTexts(platformYaml(tls, httpsPort), { shop: SHOP_YAML });

/** Response headers of an app server (production is served over TLS in the first test only). */
const securityHeaders = (hsts = "") => `    add_header X-Frame-Options "DENY" always;
    add_header X-Content-Type-Options "nosniff" always;
    add_header Referrer-Policy "strict-origin-when-cross-origin" always;
    add_header Content-Security-Policy "default-src 'self'" always;
${hsts}    add_header X-Request-ID $berth_request_id always;
    add_header Cache-Control $berth_asset_cache_control;
`;
const HSTS = '    add_header Strict-Transport-Security "max-age=86400; includeSubDomains" always;\n';

const ACME_LOCATION = `    location ^~ /.well-known/acme-challenge/ {
        root /var/www/acme;
        default_type text/plain;
    }
`;

const PRODUCTION_ROUTES = `    location / {
        set $berth_route_limit "";
        set_by_lua_block $berth_upstream { return berth_router.route("shop", "production") }
        if ($berth_upstream = "") {
            return 404;
        }
        if ($berth_upstream = "-") {
            return 502;
        }
        limit_req zone=general burst=50 nodelay;
        limit_req zone=api burst=10 nodelay;
        proxy_pass http://berth_backends;
    }

    location @berth_no_route {
        content_by_lua_block { berth_router.no_route("shop", "production") }
    }

    location = /__berth/unavailable.html {
        internal;
        alias /etc/berth/pages/unavailable.html;
    }
`;

const STAGING_IN_MAINTENANCE = `# shop/staging
server {
    listen 80;
    server_name staging.shop.example;
    set_by_lua_block $berth_generated_id { return berth_router.request_id() }
    set $berth_app shop;
    set $berth_env staging;
    set $berth_forwarded_port 8080;
${securityHeaders()}    error_page 503 /__berth/maintenance.html;

${ACME_LOCATION}
    location / {
        return 503;
    }

    location = /__berth/maintenance.html {
        internal;
        alias /etc/berth/pages/shop-staging/maintenance.html;
    }
}
`;

const SITE_HEADER = "# App shop: the servers of every environment. Rendered by berth; do not edit.\n";

describe("renderProxyConfig: one app, exact files", () => {
  test("with a certificate, port 80 answers ACME and redirects to the public HTTPS port; 443 serves the routes", () => {
    const { config } = renderProxyConfig(shopPlan(), SHOP_OBSERVED);
    assert.equal(
      config["sites/shop.conf"],
      `${SITE_HEADER}
# shop/production
server {
    listen 80;
    server_name shop.example www.shop.example;
    set_by_lua_block $berth_generated_id { return berth_router.request_id() }
    set $berth_app shop;
    set $berth_env production;

${ACME_LOCATION}
    location / {
        return 308 https://$host:8443$request_uri;
    }
}

server {
    listen 443 ssl http2;
    server_name shop.example www.shop.example;
    set_by_lua_block $berth_generated_id { return berth_router.request_id() }
    set $berth_app shop;
    set $berth_env production;
    ssl_certificate /etc/berth/certs/shop-production/fullchain.pem;
    ssl_certificate_key /etc/berth/certs/shop-production/privkey.pem;
    set $berth_forwarded_port 8443;
${securityHeaders(HSTS)}    error_page 502 504 /__berth/unavailable.html;
    error_page 404 = @berth_no_route;

${PRODUCTION_ROUTES}}

${STAGING_IN_MAINTENANCE}`,
    );
  });

  test("with TLS off, the app is served on port 80 even when a certificate exists", () => {
    const { config } = renderProxyConfig(shopPlan("off"), SHOP_OBSERVED);
    assert.equal(
      config["sites/shop.conf"],
      `${SITE_HEADER}
# shop/production
server {
    listen 80;
    server_name shop.example www.shop.example;
    set_by_lua_block $berth_generated_id { return berth_router.request_id() }
    set $berth_app shop;
    set $berth_env production;
    set $berth_forwarded_port 8080;
${securityHeaders()}    error_page 502 504 /__berth/unavailable.html;
    error_page 404 = @berth_no_route;

${ACME_LOCATION}
${PRODUCTION_ROUTES}}

${STAGING_IN_MAINTENANCE}`,
    );
  });

  test("HSTS is sent only by an environment served over TLS", () => {
    const withTls = renderProxyConfig(shopPlan(), SHOP_OBSERVED).config["sites/shop.conf"]!;
    assert.equal(withTls.split(HSTS).length, 2, "once: by production's server on 443");
    assert.ok(withTls.indexOf(HSTS) > withTls.indexOf("listen 443 ssl http2;"));
    assert.ok(withTls.indexOf(HSTS) < withTls.indexOf("# shop/staging"));
    const withoutTls = renderProxyConfig(shopPlan("off"), SHOP_OBSERVED).config["sites/shop.conf"]!;
    assert.doesNotMatch(withoutTls, /Strict-Transport-Security/);
  });

  test("redirects without a port when the public HTTPS port is 443", () => {
    const { config } = renderProxyConfig(shopPlan("self-signed", 443), SHOP_OBSERVED);
    assert.match(config["sites/shop.conf"]!, /\n {8}return 308 https:\/\/\$host\$request_uri;\n/);
  });

  test("routes.tsv: every environment's routes in plan order, every upstream's addresses sorted, the hashes of the table and of the rest", () => {
    const rendered = renderProxyConfig(shopPlan(), SHOP_OBSERVED);
    const [header, ...lines] = rendered.config["routes.tsv"]!.split("\n");
    const [format, version, token, config] = header!.split("\t");
    assert.deepEqual([format, version, token], ["berth-routes", "2", rendered.token]);
    assert.match(config!, /^[0-9a-f]{16}$/);
    assert.deepEqual(lines, [
      "route\tshop\tproduction\tregex\t^/api/v[0-9]+\\\\.json\tshop_api_production\tapi",
      "route\tshop\tproduction\tprefix\t/static/\tshop_web_production\tgeneral",
      "route\tshop\tproduction\tprefix\t/\tshop_web_production\tgeneral",
      "route\tshop\tstaging\tregex\t^/api/v[0-9]+\\\\.json\tshop_api_staging\tapi",
      "route\tshop\tstaging\tprefix\t/static/\tshop_web_staging\tgeneral",
      "route\tshop\tstaging\tprefix\t/\tshop_web_staging\tgeneral",
      "upstream\tshop_web_production\t-",
      "upstream\tshop_api_production\t10.0.1.2:3000 10.0.1.3:3000",
      "upstream\tshop_web_staging\t-",
      "upstream\tshop_api_staging\t-",
      "",
    ]);
  });

  test("routes.tsv: a tab, a line break or a backslash in a path is escaped, so each route stays one line", () => {
    const table = renderRouteTable(shopPlan().environments.slice(0, 1).map((environment) => ({
      ...environment,
      routes: [{ ...environment.routes[0]!, path: "^/a\tb\nc\\d\re" }],
    })), {}, "c0ffee");
    assert.equal(
      table.text,
      `berth-routes\t2\t${table.token}\tc0ffee\nroute\tshop\tproduction\tregex\t^/a\\tb\\nc\\\\d\\re\tshop_api_production\tapi\nupstream\tshop_web_production\t-\nupstream\tshop_api_production\t-\n`,
    );
  });

  test("a route change changes the route table and the token, and no other file", () => {
    const before = renderProxyConfig(shopPlan(), SHOP_OBSERVED);
    const plan = shopPlan();
    for (const environment of plan.environments) environment.routes = environment.routes.filter((route) => route.path !== "/static/");
    plan.environments[0]!.routes.push({ ...plan.environments[0]!.routes[0]!, kind: "prefix", path: "/new", limit: { name: "general", rate: 100, burst: 50 } });
    const after = renderProxyConfig(plan, SHOP_OBSERVED);
    assert.notEqual(after.token, before.token);
    const changed = Object.keys(after.config).filter((path) => after.config[path] !== before.config[path]);
    assert.deepEqual(changed, ["routes.tsv"]);
    assert.equal(after.config["routes.tsv"]!.split("\n")[0]!.split("\t")[3], before.config["routes.tsv"]!.split("\n")[0]!.split("\t")[3], "same configuration hash");
  });

  test("nginx.conf: shared settings, one zone per rate-limit class, the server for unknown hosts", () => {
    const { config } = renderProxyConfig(shopPlan(), SHOP_OBSERVED);
    assert.equal(
      config["nginx.conf"],
      `# Proxy of berth platform "test". Rendered by berth; do not edit: the next apply replaces it.
load_module /usr/lib/nginx/modules/ndk_http_module.so;
load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;
worker_processes auto;
worker_rlimit_nofile 8192;
# The regexes every request meets (the asset cache map, regex routes) run as machine code.
pcre_jit on;
pid /run/nginx.pid;
error_log /var/log/berth/error.log warn;

events {
    worker_connections 4096;
}

http {
    server_tokens off;
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 65s;
    server_names_hash_bucket_size 128;
    server_names_hash_max_size 4096;
    # Variables a server sets stay empty where it did not run: $berth_app and $berth_env for requests
    # no tenant server answered.
    uninitialized_variable_warn off;

    # A client's X-Request-ID is kept when it looks like an id; otherwise the router makes one.
    map $http_x_request_id $berth_request_id {
        default $berth_generated_id;
        "" $berth_generated_id;
        "~^[A-Za-z0-9._:-]{1,128}$" $http_x_request_id;
    }
    # Set by every server (the router's id); this value only where no server ran.
    map "" $berth_generated_id {
        default $request_id;
    }

    log_format berth_json escape=json
        '{"time":"$time_iso8601",'
        '"app":"$berth_app",'
        '"env":"$berth_env",'
        '"host":"$host",'
        '"method":"$request_method",'
        '"uri":"$request_uri",'
        '"status":$status,'
        '"bytes":$body_bytes_sent,'
        '"request_time":$request_time,'
        '"upstream_response_time":"$upstream_response_time",'
        '"upstream_addr":"$upstream_addr",'
        '"request_id":"$berth_request_id",'
        '"remote_addr":"$remote_addr",'
        '"user_agent":"$http_user_agent"}';
    access_log /var/log/berth/access.log berth_json buffer=64k flush=1s;

    # Routes are data: the router gives each request its upstream and rate-limit class from the route table.
    lua_shared_dict berth_router 64k;
    lua_regex_cache_max_entries 8192;
    init_by_lua_block {
        berth_router = dofile("/etc/berth/current/router.lua")
        berth_router.start({ live = "/etc/berth/current/routes.tsv", generations = "/etc/berth/gen", file = "routes.tsv" })
    }
    init_worker_by_lua_block {
        berth_router.watch()
    }

    limit_req_zone $berth_limit_general zone=general:10m rate=100r/s;
    map $berth_route_limit $berth_limit_general {
        general $binary_remote_addr;
        default "";
    }
    limit_req_zone $berth_limit_api zone=api:10m rate=20r/s;
    map $berth_route_limit $berth_limit_api {
        api $binary_remote_addr;
        default "";
    }
    # berth's own checks of a staged route table, from the generation server.
    limit_req_zone $server_name zone=berth_check:64k rate=20r/s;
    limit_req_status 429;

    gzip on;
    gzip_comp_level 6;
    gzip_vary on;
    gzip_proxied any;
    gzip_types text/plain text/css text/javascript application/javascript application/json image/svg+xml;

    # Long caching for static assets; an empty value makes add_header add nothing.
    map $uri $berth_asset_cache_control {
        default "";
        "~*\\.(js|css|png|jpg|jpeg|gif|ico|svg|woff|woff2)$" "public, max-age=604800, immutable";
    }
    # WebSocket upgrades pass through; other requests send no Connection header, keeping upstream connections alive.
    map $http_upgrade $berth_connection_upgrade {
        default upgrade;
        "" "";
    }
    # A literal '$' for header values: nginx strings have no escape for it.
    geo $berth_dollar {
        default "$";
    }

    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305;
    ssl_prefer_server_ciphers off;
    ssl_session_cache shared:berth_tls:10m;
    ssl_session_timeout 1d;
    ssl_session_tickets off;

    # Addresses are data (the route table): a deploy's switch or a restarted container changes no
    # configuration. The server line only satisfies nginx; the balancer never sends to it.
    upstream berth_backends {
        server 0.0.0.1:1;
        balancer_by_lua_block { berth_router.balance() }
        keepalive 256;
    }

    # HTTP/1.1 for keepalive and WebSockets; a replica that refuses or times out is skipped.
    proxy_http_version 1.1;
    proxy_connect_timeout 5s;
    proxy_next_upstream error timeout;
    # Request headers for every upstream, and the app's own X-Request-ID dropped (each server answers with
    # the request's id); no location sets its own, so all inherit these.
    proxy_hide_header X-Request-ID;
    proxy_set_header Host $host;
    proxy_set_header X-Real-IP $remote_addr;
    proxy_set_header X-Forwarded-For $remote_addr;
    proxy_set_header X-Forwarded-Proto $scheme;
    proxy_set_header X-Forwarded-Host $host;
    proxy_set_header X-Forwarded-Port $berth_forwarded_port;
    proxy_set_header X-Request-ID $berth_request_id;
    proxy_set_header Upgrade $http_upgrade;
    proxy_set_header Connection $berth_connection_upgrade;

    server {
        listen 80 default_server;
        listen 443 ssl http2 default_server;
        server_name _;
        ssl_reject_handshake on;
        set_by_lua_block $berth_generated_id { return berth_router.request_id() }
        return 421;
    }

    include generation.conf;

    include sites/*.conf;
}
`,
    );
  });

  test("generation.conf: a server for berth's own host that answers the route table's token, and checks staged tables", () => {
    const rendered = renderProxyConfig(shopPlan(), SHOP_OBSERVED);
    assert.match(rendered.token, /^[0-9a-f]{16}$/);
    assert.equal(
      rendered.config["generation.conf"],
      `# Rendered by berth; do not edit. Answers berth's questions about the route table the workers run.
server {
    listen 80;
    server_name ${GENERATION_HOST};
    access_log off;
    default_type text/plain;

    location / {
        content_by_lua_block { berth_router.answer_token() }
    }

    location = /route-table {
        limit_req zone=berth_check burst=20;
        content_by_lua_block { berth_router.answer_check() }
    }
}
`,
    );
    assert.match(GENERATION_HOST, /_/, "no tenant domain can be this host");
    const other = renderProxyConfig(shopPlan(), { ...SHOP_OBSERVED, upstreams: { shop_api_production: ["10.0.1.9:3000"] } });
    assert.notEqual(other.token, rendered.token, "another configuration, another token");
    assert.equal(renderProxyConfig(shopPlan(), SHOP_OBSERVED).token, rendered.token);
  });

  test("renders exactly these files and pages", () => {
    const rendered = renderProxyConfig(shopPlan(), SHOP_OBSERVED);
    assert.deepEqual(Object.keys(rendered.config), ["nginx.conf", "generation.conf", "router.lua", "sites/shop.conf", "routes.tsv"]);
    assert.equal(rendered.config["router.lua"], ROUTER_LUA);
    assert.deepEqual(Object.keys(rendered.pages), ["unavailable.html", "shop-production/maintenance.html", "shop-staging/maintenance.html"]);
  });

  test("pages tell visitors what happens and name nothing internal", () => {
    const { pages } = renderProxyConfig(shopPlan(), SHOP_OBSERVED);
    const unavailable = pages["unavailable.html"]!;
    assert.match(unavailable, /<title>Temporarily unavailable<\/title>/);
    assert.doesNotMatch(unavailable, /shop|berth|nginx|upstream|container|10\.0\./i);
    const maintenance = pages["shop-staging/maintenance.html"]!;
    assert.match(maintenance, /<h1>Down for maintenance<\/h1>/);
    assert.match(maintenance, /staging\.shop\.example is being updated/);
    assert.doesNotMatch(maintenance, /berth|nginx|upstream|container|shop_/i);
  });

  test("paths outside the generation come from ProxyPaths", () => {
    const paths = { certs: "/x/certs", pages: "/x/pages", acmeWebroot: "/x/acme", accessLog: "/x/a.log", errorLog: "/x/e.log", pid: "/x/pid", live: "/x/current", generations: "/x/gen" };
    const { config } = renderProxyConfig(shopPlan(), SHOP_OBSERVED, paths);
    const all = Object.values(config).join("\n");
    for (const absolute of all.matchAll(/(?<=[\s"])\/(etc|var|run)\/[^\s;"]*/g)) assert.fail(`default path ${absolute[0]} left in the config`);
    assert.match(config["sites/shop.conf"]!, /ssl_certificate \/x\/certs\/shop-production\/fullchain\.pem;/);
    assert.match(config["sites/shop.conf"]!, /alias \/x\/pages\/shop-staging\/maintenance\.html;/);
    assert.match(config["nginx.conf"]!, /dofile\("\/x\/current\/router\.lua"\)[\s\S]*live = "\/x\/current\/routes\.tsv", generations = "\/x\/gen"/);
    assert.match(config["nginx.conf"]!, /pid \/x\/pid;[\s\S]*error_log \/x\/e\.log warn;[\s\S]*access_log \/x\/a\.log berth_json buffer=64k flush=1s;/);
  });

  test("same input, same bytes; the order of observed addresses changes nothing", () => {
    const first = renderProxyConfig(shopPlan(), SHOP_OBSERVED);
    const reordered = renderProxyConfig(shopPlan(), {
      upstreams: { shop_api_production: ["10.0.1.2:3000", "10.0.1.3:3000", "10.0.1.2:3000"] },
      certificates: { "shop/production": true },
    });
    assert.deepEqual(reordered, first);
  });

  test("refuses an observed address that is not ip:port rather than write it into the config", () => {
    assert.throws(
      () => renderProxyConfig(shopPlan(), { upstreams: { shop_api_production: ["10.0.1.2:3000; return 200"] }, certificates: {} }),
      /observed address "10\.0\.1\.2:3000; return 200" of upstream shop_api_production is not "ip:port"/,
    );
  });
});

describe("nginx quoting", () => {
  test("a backslash reaches the regex engine unchanged", () => {
    assert.equal(quoted("^/a\\.b"), '"^/a\\.b"');
    // nginx reads \\ as \, and \t as a tab: those backslashes are doubled.
    assert.equal(quoted("^/a\\\\b\\t"), '"^/a\\\\\\b\\\\t"');
    assert.equal(quoted('say "hi"\\'), '"say \\"hi\\"\\\\"');
  });

  test("a '$' in a header value is written as the variable holding '$'", () => {
    assert.equal(quotedText("script-src 'nonce-$x'"), "\"script-src 'nonce-${berth_dollar}x'\"");
  });
});

// Properties on the reference platform (three apps, two environments each), for observations
// from "nothing runs yet" to "everything runs with certificates", with maintenance and HSTS.
function withMaintenanceAndHsts(plan: PlatformPlan): PlatformPlan {
  const changed = structuredClone(plan);
  changed.environments.forEach((environment, index) => {
    environment.isInMaintenance = index % 3 === 1;
    environment.headers.hsts = { maxAgeSeconds: 31_536_000, includeSubdomains: false, preload: false };
  });
  return changed;
}

interface Scenario {
  name: string;
  plan: PlatformPlan;
  observed: ProxyObserved;
}

async function scenarios(): Promise<Scenario[]> {
  const plan = await referencePlan();
  const half = everythingObserved(plan);
  for (const key of Object.keys(half.certificates).filter((_, index) => index % 2 === 0)) half.certificates[key] = false;
  return [
    { name: "nothing running, no certificates", plan, observed: { upstreams: {}, certificates: {} } },
    { name: "everything running with certificates", plan, observed: everythingObserved(plan) },
    { name: "half the certificates, maintenance and HSTS", plan: withMaintenanceAndHsts(plan), observed: half },
  ];
}

interface Server {
  site: string;
  ports: string[];
  names: string[];
  directives: Directive[];
}

/** The nginx files of a generation (not the router's Lua and route table). */
function parseAll(rendered: RenderedProxy): Map<string, Directive[]> {
  return new Map(Object.entries(rendered.config).filter(([path]) => path.endsWith(".conf")).map(([path, text]) => [path, parseNginx(text)]));
}

function serversOf(files: Map<string, Directive[]>): Server[] {
  const servers: Server[] = [];
  for (const [site, tree] of files) {
    for (const { directive } of walk(tree)) {
      if (directive.name !== "server" || !directive.children) continue;
      const children = directive.children;
      servers.push({
        site,
        ports: children.filter((child) => child.name === "listen").map((child) => child.args[0]!),
        names: children.filter((child) => child.name === "server_name").flatMap((child) => child.args),
        directives: children,
      });
    }
  }
  return servers;
}

function locations(server: Server): Directive[] {
  return server.directives.filter((directive) => directive.name === "location");
}

describe("renderProxyConfig: properties of the reference platform", async () => {
  for (const { name, plan, observed } of await scenarios()) {
    describe(name, () => {
      const rendered = renderProxyConfig(plan, observed);
      const files = parseAll(rendered);
      const servers = serversOf(files);
      const tenantServers = servers.filter((server) => !server.names.includes("_") && !server.names.includes(GENERATION_HOST));
      const hasCertificate = (environment: PlatformPlan["environments"][number]) =>
        observed.certificates[`${environment.app}/${environment.env}`] === true;
      /** The server that serves an environment's app: on 443 once it has a certificate. */
      const appServer = (environment: PlatformPlan["environments"][number]) => {
        const port = hasCertificate(environment) ? "443" : "80";
        return tenantServers.find((server) => server.ports[0] === port && server.names.includes(environment.domains[0]!))!;
      };

      test("every domain is named by exactly one server on each port it is served on", () => {
        for (const environment of plan.environments) {
          const hasTls = hasCertificate(environment);
          for (const port of hasTls ? ["80", "443"] : ["80"]) {
            for (const domain of environment.domains) {
              const owners = servers.filter((server) => server.ports.includes(port) && server.names.includes(domain));
              assert.equal(owners.length, 1, `${domain} on port ${port}`);
              assert.equal(owners[0]!.site, configFiles.site(environment.app));
            }
          }
          if (!hasTls) {
            for (const domain of environment.domains) {
              assert.ok(!servers.some((server) => server.ports.includes("443") && server.names.includes(domain)), `${domain} has no certificate yet`);
            }
          }
        }
      });

      test("only the server for unknown hosts is a default server, on both ports", () => {
        const defaults = servers.filter((server) => server.directives.some((d) => d.name === "listen" && d.args.includes("default_server")));
        assert.equal(defaults.length, 1);
        assert.deepEqual(defaults[0]!.ports, ["80", "443"]);
        assert.ok(defaults[0]!.directives.some((d) => d.name === "ssl_reject_handshake" && d.args[0] === "on"));
        assert.ok(defaults[0]!.directives.some((d) => d.name === "return" && ["421", "444"].includes(d.args[0]!)));
      });

      test("one upstream, balanced by the router; every proxy_pass goes to it; the table has every component's addresses and every route's upstream", () => {
        const defined = [...files.values()].flatMap((tree) => [...walk(tree)].filter(({ directive }) => directive.name === "upstream").map(({ directive }) => directive));
        assert.deepEqual(defined.map((upstream) => upstream.args), [["berth_backends"]]);
        assert.deepEqual(defined[0]!.children!.map((d) => d.name), ["server", "balancer_by_lua_block", "keepalive"]);
        for (const { directive } of [...files.values()].flatMap((tree) => [...walk(tree)])) {
          if (directive.name === "proxy_pass") assert.deepEqual(directive.args, ["http://berth_backends"]);
        }
        const lines = rendered.config["routes.tsv"]!.trim().split("\n").slice(1).map((line) => line.split("\t"));
        const tableAddresses = new Map(lines.filter((fields) => fields[0] === "upstream").map((fields) => [fields[1]!, fields[2]!]));
        const components = plan.environments.flatMap((environment) => environment.components.map((component) => `${environment.app}_${component.name}_${environment.env}`.replaceAll("-", "_")));
        assert.deepEqual([...tableAddresses.keys()].sort(), components.sort());
        for (const [name, addresses] of tableAddresses) {
          const observedAddresses = observed.upstreams[name] ?? [];
          assert.equal(addresses, observedAddresses.length === 0 ? "-" : [...new Set(observedAddresses)].sort().join(" "), name);
        }
        for (const fields of lines.filter((fields) => fields[0] === "route")) assert.ok(tableAddresses.has(fields[5]!), fields[5]);
      });

      test("every include names a rendered file, and every limit_req a declared zone", () => {
        const zones = [...walk(files.get(configFiles.nginxConf)!)]
          .filter(({ directive }) => directive.name === "limit_req_zone")
          .map(({ directive }) => /zone=([^:]+):/.exec(directive.args.join(" "))![1]);
        assert.deepEqual(zones, [...Object.keys(plan.proxy.rateLimits), "berth_check"]);
        for (const { directive } of [...files.values()].flatMap((tree) => [...walk(tree)])) {
          if (directive.name === "include" && !directive.args[0]!.includes("*")) assert.ok(directive.args[0]! in rendered.config, directive.args[0]);
          if (directive.name === "limit_req") assert.ok(zones.includes(directive.args[0]!.replace("zone=", "")), directive.args[0]);
        }
      });

      test("every error page is an internal location of its server, serving a rendered page, or the router's answer for a path no route takes", () => {
        for (const server of tenantServers) {
          for (const errorPage of server.directives.filter((d) => d.name === "error_page")) {
            const uri = errorPage.args.at(-1)!;
            if (uri.startsWith("@")) {
              // A named location is internal by nature.
              assert.deepEqual(errorPage.args, ["404", "=", "@berth_no_route"]);
              const named = locations(server).find((d) => d.args[0] === uri);
              const lua = named?.children?.find((d) => d.name === "content_by_lua_block")?.args[0]?.trim() ?? "";
              assert.match(lua, /^berth_router\.no_route\("[a-z0-9-]+", "[a-z0-9-]+"\)$/, `${server.names[0]}: no location for ${uri}`);
              continue;
            }
            const location = locations(server).find((d) => d.args[0] === "=" && d.args[1] === uri);
            assert.ok(location, `${server.names[0]}: no location for ${uri}`);
            assert.ok(location.children!.some((d) => d.name === "internal"));
            const alias = location.children!.find((d) => d.name === "alias")!.args[0]!;
            assert.ok(alias.replace(`${DEFAULT_PROXY_PATHS.pages}/`, "") in rendered.pages, alias);
          }
        }
      });

      test("request and response headers are set once per level, and every location inherits them", () => {
        const http = files.get(configFiles.nginxConf)!.find((d) => d.name === "http")!.children!;
        const requestHeaders = http.filter((d) => d.name === "proxy_set_header").map((d) => d.args[0]);
        assert.deepEqual(requestHeaders, ["Host", "X-Real-IP", "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Forwarded-Port", "X-Request-ID", "Upgrade", "Connection"]);
        for (const server of tenantServers) {
          for (const location of locations(server)) {
            // A header line in a location would drop every inherited one there.
            assert.ok(!location.children!.some((d) => d.name === "add_header" || d.name === "proxy_set_header" || d.name === "include"), `${server.names[0]} ${location.args.join(" ")}`);
            if (location.children!.some((d) => d.name === "proxy_pass")) assert.ok(location.children!.some((d) => d.name === "limit_req"));
          }
          const isRedirect = locations(server).some((location) => location.children!.some((d) => d.name === "return" && d.args[0] === "308"));
          if (isRedirect) continue;
          const headers = server.directives.filter((d) => d.name === "add_header").map((d) => d.args[0]);
          for (const name of ["X-Frame-Options", "X-Content-Type-Options", "Referrer-Policy", "Content-Security-Policy", "X-Request-ID", "Cache-Control"]) {
            assert.ok(headers.includes(name), `${server.names[0]} sets ${name}`);
          }
        }
      });

      test("HSTS is sent only on port 443", () => {
        for (const server of tenantServers) {
          const hsts = server.directives.some((d) => d.name === "add_header" && d.args[0] === "Strict-Transport-Security");
          if (!server.ports.includes("443")) assert.ok(!hsts, server.names[0]);
        }
        const withHsts = tenantServers.filter((server) => server.directives.some((d) => d.name === "add_header" && d.args[0] === "Strict-Transport-Security"));
        assert.equal(withHsts.length, plan.environments.filter((environment) => environment.headers.hsts && hasCertificate(environment)).length);
      });

      test("every port-80 server answers ACME challenges ahead of any regex route", () => {
        for (const server of tenantServers.filter((s) => s.ports.includes("80"))) {
          const acme = locations(server).find((d) => d.args.join(" ") === "^~ /.well-known/acme-challenge/");
          assert.ok(acme, server.names[0]);
          assert.deepEqual(acme.children!.find((d) => d.name === "root")!.args, [DEFAULT_PROXY_PATHS.acmeWebroot]);
        }
      });

      test("an environment in maintenance answers 503 with its page, and proxies nothing", () => {
        for (const environment of plan.environments) {
          const server = appServer(environment);
          const proxies = locations(server).some((location) => location.children!.some((d) => d.name === "proxy_pass"));
          assert.equal(proxies, !environment.isInMaintenance);
          if (environment.isInMaintenance) {
            assert.deepEqual(server.directives.find((d) => d.name === "error_page")!.args, ["503", "/__berth/maintenance.html"]);
            assert.ok(`${environment.app}-${environment.env}/maintenance.html` in rendered.pages);
          }
        }
      });

      test("pages: the unavailable page and one maintenance page per environment", () => {
        assert.deepEqual(
          Object.keys(rendered.pages).sort(),
          [pageFiles.unavailable, ...plan.environments.map((environment) => pageFiles.maintenance(environment))].sort(),
        );
      });

      test("renders the same bytes twice", () => {
        assert.deepEqual(renderProxyConfig(plan, observed), rendered);
      });
    });
  }
});

test("a site is rendered again whenever one of its inputs changed, and only its own inputs count", () => {
  const site = configFiles.site("shop");
  const first = renderProxyConfig(shopPlan(), SHOP_OBSERVED);
  // Another port, another TLS state, maintenance: each must reach the file, whatever was rendered before.
  const paused = shopPlan();
  paused.environments[0]!.isInMaintenance = true;
  assert.match(renderProxyConfig(paused, SHOP_OBSERVED).config[site]!, /# shop\/production\nserver \{[^]*?return 503;/);
  const otherPort = renderProxyConfig(shopPlan("self-signed", 9443), SHOP_OBSERVED);
  assert.notEqual(otherPort.config[site], first.config[site]);
  const plain = renderProxyConfig(shopPlan("off"), SHOP_OBSERVED);
  assert.doesNotMatch(plain.config[site]!, /ssl_certificate/);
  // Back to the first inputs: the same bytes as the first render.
  assert.equal(renderProxyConfig(shopPlan(), SHOP_OBSERVED).config[site], first.config[site]);
  // Addresses are not inputs of a site: they are in the route table alone.
  const moved = renderProxyConfig(shopPlan(), { ...SHOP_OBSERVED, upstreams: { shop_api_production: ["10.0.1.7:3000"] } });
  assert.equal(moved.config[site], first.config[site]);
  assert.match(moved.config["routes.tsv"]!, /\nupstream\tshop_api_production\t10\.0\.1\.7:3000\n/);
});
