// The planner: spec → desired state, pure. Names, labels, resolved resources and health
// checks, routes with their rate-limit classes, which networks the proxy and PostgreSQL join,
// the reference platform's whole plan, and the text `berth plan` prints.
import { test } from "node:test";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { formatIssue } from "../../src/spec/issues.js";
import { loadSpec } from "../../src/spec/index.js";
import { validateSpec, type Spec } from "../../src/spec/validate.js";
import { formatPlan } from "../../src/plan/format.js";
import { healthTest, planPlatform } from "../../src/plan/plan.js";
import type { EnvironmentPlan, PlatformPlan } from "../../src/plan/types.js";

const HOST = { cpus: 2, memoryBytes: 4 * 1024 ** 3 };
const MiB = 1024 ** 2;
const ROOT = "/srv/spec";
const EXAMPLE = fileURLToPath(new URL("../../examples/reference-platform", import.meta.url));

function specOf(platform: string, apps: Record<string, string>): Spec {
  const result = validateSpec({ platform: { file: "platform.yaml", text: platform }, apps: Object.entries(apps).map(([file, text]) => ({ file, text })) }, HOST);
  if (!result.ok) assert.fail(`unexpected problems:\n${result.issues.map(formatIssue).join("\n")}`);
  return result.spec;
}

const PLATFORM = `
name: t
proxy: { httpPort: 8080, httpsPort: 8443 }
defaults:
  resources: { cpus: 1, memory: 512M, pids: 100 }
  health: { interval: 10s, timeout: 2s, retries: 4 }
`;

const SHOP = `
name: shop
source: { path: ../src/shop }
components:
  web:
    build: web
    port: 8080
    health: /healthz
  api:
    image: "node:20"
    port: 3000
    health: { path: /api/health, interval: 2s, startPeriod: 30s }
    resources: { memory: 1G }
    replicas: 2
    database: true
    env: { A: 1 }
    release: [node, migrate.js]
routes:
  - { path: "^/api/", to: api, limit: api }
  - { path: /, to: web }
environments:
  production:
    domains: [shop.example.org]
    env: { LOG: warn }
    components:
      api: { replicas: 3, resources: { cpus: 1.5 }, env: { A: 2 } }
  staging:
    domains: [staging.shop.example.org]
    maintenance: true
`;

const STATIC = `
name: static
source: { git: "https://git.example.org/static.git", ref: v2 }
components:
  site: { build: { context: site, dockerfile: Dockerfile.nginx }, port: 80 }
routes:
  - { path: /, to: site }
headers: { hsts: true }
environments:
  production: { domains: [static.example.org] }
`;

const plan = () => planPlatform(specOf(PLATFORM, { "apps/shop.yaml": SHOP, "apps/static.yaml": STATIC }), { root: ROOT });

function environment(p: PlatformPlan, app: string, env: string): EnvironmentPlan {
  const found = p.environments.find((e) => e.app === app && e.env === env);
  assert.ok(found, `no environment ${app}/${env}`);
  return found;
}

const containerNames = (env: EnvironmentPlan) => env.components.flatMap((c) => c.containers.map((container) => container.name));

test("one environment per app environment, in file order, each with its network berth-{app}-{env}", () => {
  const p = plan();
  assert.deepEqual(
    p.environments.map((e) => [`${e.app}/${e.env}`, e.network.name]),
    [
      ["shop/production", "berth-shop-production"],
      ["shop/staging", "berth-shop-staging"],
      ["static/production", "berth-static-production"],
    ],
  );
});

test("containers are {app}-{component}-{env}, with -1, -2, … for replicas; an environment's replicas win", () => {
  const p = plan();
  assert.deepEqual(containerNames(environment(p, "shop", "production")), [
    "shop-web-production",
    "shop-api-production-1",
    "shop-api-production-2",
    "shop-api-production-3",
  ]);
  assert.deepEqual(containerNames(environment(p, "shop", "staging")), ["shop-web-staging", "shop-api-staging-1", "shop-api-staging-2"]);
  assert.deepEqual(containerNames(environment(p, "static", "production")), ["static-site-production"]);
  const api = environment(p, "shop", "production").components.find((c) => c.name === "api")!;
  assert.deepEqual(
    api.containers.map((c) => [c.replica, c.aliases]),
    [
      [1, ["shop-api-production"]],
      [2, ["shop-api-production"]],
      [3, ["shop-api-production"]],
    ],
  );
});

test("databases are {app}_{env}, only for environments with a database component", () => {
  const p = plan();
  assert.deepEqual(
    p.environments.map((e) => [`${e.app}/${e.env}`, e.database ?? null]),
    [
      ["shop/production", { name: "shop_production", role: "shop_production", connectionLimit: 20, statementTimeoutMs: 30_000, idleInTransactionTimeoutMs: 60_000 }],
      ["shop/staging", { name: "shop_staging", role: "shop_staging", connectionLimit: 20, statementTimeoutMs: 30_000, idleInTransactionTimeoutMs: 60_000 }],
      ["static/production", null],
    ],
  );
});

test("postgres joins only the networks of environments with a database; the proxy joins all", () => {
  const p = plan();
  assert.deepEqual(p.proxy.networks, ["berth-shop-production", "berth-shop-staging", "berth-static-production"]);
  assert.deepEqual(p.postgres, {
    kind: "container",
    container: "berth-t-postgres",
    image: "postgres:15-bookworm",
    volume: "berth-t-postgres-data",
    maxConnections: 100,
    reservedConnections: 5,
    networks: ["berth-shop-production", "berth-shop-staging"],
    labels: { "berth.managed": "true", "berth.platform": "t", "berth.role": "postgres" },
  });
});

test("the proxy: names, ports, volumes, rate-limit classes, labels", () => {
  const { proxy } = plan();
  assert.deepEqual(proxy, {
    container: "berth-t-proxy",
    image: "berth-nginx:1.22",
    bind: "0.0.0.0",
    httpPort: 8080,
    httpsPort: 8443,
    volumes: { config: "berth-t-proxy-config", certs: "berth-t-proxy-certs", acme: "berth-t-proxy-acme", logs: "berth-t-proxy-logs" },
    rateLimits: { general: { rate: 100, burst: 50 }, api: { rate: 20, burst: 20 } },
    networks: ["berth-shop-production", "berth-shop-staging", "berth-static-production"],
    labels: { "berth.managed": "true", "berth.platform": "t", "berth.role": "proxy" },
  });
});

test("an external PostgreSQL server has no container and joins no network", () => {
  const spec = specOf("name: t\npostgres: { url: postgres://admin:pw@db.internal/postgres, maxConnections: 50 }\n", { "apps/shop.yaml": SHOP });
  assert.deepEqual(planPlatform(spec, { root: ROOT }).postgres, {
    kind: "external",
    url: "postgres://admin:pw@db.internal/postgres",
    maxConnections: 50,
    reservedConnections: 5,
  });
});

test("a tenant container, whole: image, resources, health, env, labels", () => {
  const web = environment(plan(), "shop", "production").components.find((c) => c.name === "web")!;
  assert.deepEqual(web.containers, [
    {
      name: "shop-web-production",
      app: "shop",
      env: "production",
      component: "web",
      replica: 1,
      image: { kind: "build", app: "shop", component: "web", source: { kind: "dir", dir: "/srv/spec/src/shop" }, context: "web", dockerfile: "Dockerfile" },
      port: 8080,
      network: "berth-shop-production",
      aliases: ["shop-web-production"],
      envVars: { LOG: "warn" },
      hasDatabase: false,
      resources: { cpus: 1, memoryBytes: 512 * MiB, pids: 100 },
      health: { path: "/healthz", test: healthTest(8080, "/healthz"), intervalMs: 10_000, timeoutMs: 2000, retries: 4, startPeriodMs: 30_000 },
      capAdd: [],
      labels: {
        "berth.managed": "true",
        "berth.platform": "t",
        "berth.role": "tenant",
        "berth.app": "shop",
        "berth.env": "production",
        "berth.component": "web",
        "berth.replica": "1",
      },
    },
  ]);
});

test("resources per field: environment override, else component, else platform default", () => {
  const p = plan();
  const resourcesOf = (env: string, component: string) =>
    environment(p, "shop", env).components.find((c) => c.name === component)!.containers.map((c) => c.resources);
  // cpus from the production override, memory from the component, pids from the platform.
  assert.deepEqual(resourcesOf("production", "api"), Array(3).fill({ cpus: 1.5, memoryBytes: 1024 * MiB, pids: 100 }));
  assert.deepEqual(resourcesOf("staging", "api"), Array(2).fill({ cpus: 1, memoryBytes: 1024 * MiB, pids: 100 }));
  assert.deepEqual(resourcesOf("staging", "web"), [{ cpus: 1, memoryBytes: 512 * MiB, pids: 100 }]);
});

test("environment variables: component, then environment, then the environment's component override", () => {
  const p = plan();
  const envOf = (env: string, component: string) => environment(p, "shop", env).components.find((c) => c.name === component)!.containers[0]!.envVars;
  assert.deepEqual(envOf("production", "api"), { A: "2", LOG: "warn" });
  assert.deepEqual(envOf("staging", "api"), { A: "1" });
  assert.deepEqual(envOf("staging", "web"), {});
});

test("health checks take the component's settings, else the platform defaults", () => {
  const api = environment(plan(), "shop", "staging").components.find((c) => c.name === "api")!;
  assert.deepEqual(api.containers[0]!.health, {
    path: "/api/health",
    test: healthTest(3000, "/api/health"),
    intervalMs: 2000,
    timeoutMs: 2000,
    retries: 4,
    startPeriodMs: 30_000,
  });
  const site = environment(plan(), "static", "production").components[0]!.containers[0]!;
  assert.equal(site.health.path, "/");
  assert.equal(site.health.intervalMs, 10_000);
});

test("the health command is a shell test that asks the component's own port, with the URL quoted", () => {
  const [kind, command] = healthTest(3000, "/api/health");
  assert.equal(kind, "CMD-SHELL");
  assert.ok(command!.startsWith("curl -fsS -o /dev/null 'http://127.0.0.1:3000/api/health' || "), command);
});

test("components: image, release command, database flag, replicas", () => {
  const components = environment(plan(), "shop", "production").components.map((component) => ({ ...component, containers: component.containers.length }));
  assert.deepEqual(components, [
    {
      name: "web",
      image: { kind: "build", app: "shop", component: "web", source: { kind: "dir", dir: "/srv/spec/src/shop" }, context: "web", dockerfile: "Dockerfile" },
      port: 8080,
      replicas: 1,
      hasDatabase: false,
      containers: 1,
    },
    { name: "api", image: { kind: "image", ref: "node:20" }, port: 3000, replicas: 3, release: ["node", "migrate.js"], hasDatabase: true, containers: 3 },
  ]);
  assert.deepEqual(environment(plan(), "static", "production").components[0]!.image, {
    kind: "build",
    app: "static",
    component: "site",
    source: { kind: "git", url: "https://git.example.org/static.git", ref: "v2" },
    context: "site",
    dockerfile: "Dockerfile.nginx",
  });
});

test("routes: kind, upstream, containers and the rate-limit class they name", () => {
  assert.deepEqual(environment(plan(), "shop", "production").routes, [
    {
      kind: "regex",
      path: "^/api/",
      component: "api",
      port: 3000,
      upstream: "shop_api_production",
      containers: ["shop-api-production-1", "shop-api-production-2", "shop-api-production-3"],
      limit: { name: "api", rate: 20, burst: 20 },
    },
    {
      kind: "prefix",
      path: "/",
      component: "web",
      port: 8080,
      upstream: "shop_web_production",
      containers: ["shop-web-production"],
      limit: { name: "general", rate: 100, burst: 50 },
    },
  ]);
});

test("an environment's domains, maintenance, headers, tls and network labels", () => {
  const p = plan();
  const staging = environment(p, "shop", "staging");
  assert.deepEqual(
    { domains: staging.domains, isInMaintenance: staging.isInMaintenance, tls: staging.tls, network: staging.network },
    {
      domains: ["staging.shop.example.org"],
      isInMaintenance: true,
      tls: { mode: "self-signed" },
      network: {
        name: "berth-shop-staging",
        labels: { "berth.managed": "true", "berth.platform": "t", "berth.role": "network", "berth.app": "shop", "berth.env": "staging" },
      },
    },
  );
  assert.equal(environment(p, "shop", "production").isInMaintenance, false);
  assert.deepEqual(environment(p, "shop", "production").headers.hsts, false);
  assert.deepEqual(environment(p, "static", "production").headers, {
    csp: "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'self'",
    frameOptions: "SAMEORIGIN",
    referrerPolicy: "strict-origin-when-cross-origin",
    hsts: { maxAgeSeconds: 31_536_000, includeSubdomains: false, preload: false },
  });
});

test("tls modes: acme takes the platform's account, manual the environment's files", () => {
  const app = `name: a\ncomponents:\n  web: { image: nginx, port: 80 }\nroutes:\n  - { path: /, to: web }\nenvironments:\n  prod:\n    domains: [a.example.org]\n`;
  const acme = planPlatform(specOf("name: t\ntls: { mode: acme, email: ops@example.org }\n", { "apps/a.yaml": app }), { root: ROOT });
  assert.deepEqual(acme.environments[0]!.tls, { mode: "acme", email: "ops@example.org", directory: "https://acme-v02.api.letsencrypt.org/directory" });
  const manual = planPlatform(
    specOf("name: t\ntls: { mode: manual }\n", { "apps/a.yaml": app + "    tls: { cert: /etc/a.pem, key: /etc/a.key }\n" }),
    { root: ROOT },
  );
  assert.deepEqual(manual.environments[0]!.tls, { mode: "manual", certFile: "/etc/a.pem", keyFile: "/etc/a.key" });
});

test("planning is pure: the same spec gives the same plan, and the spec is left as it was", () => {
  const spec = specOf(PLATFORM, { "apps/shop.yaml": SHOP, "apps/static.yaml": STATIC });
  const before = structuredClone(spec);
  const first = planPlatform(spec, { root: ROOT });
  assert.deepEqual(planPlatform(spec, { root: ROOT }), first);
  assert.deepEqual(spec, before);
});

test("the reference platform: 6 environments with their networks, containers, routes and databases", async () => {
  const { root, spec } = await loadSpec(EXAMPLE, HOST);
  const p = planPlatform(spec, { root });
  assert.deepEqual(
    p.environments.map((e) => `${e.app}/${e.env}`),
    ["filter-ical/production", "filter-ical/staging", "gabs-massage/production", "gabs-massage/staging", "paiss/production", "paiss/staging"],
  );
  const networks = [
    "berth-filter-ical-production",
    "berth-filter-ical-staging",
    "berth-gabs-massage-production",
    "berth-gabs-massage-staging",
    "berth-paiss-production",
    "berth-paiss-staging",
  ];
  assert.deepEqual(p.environments.map((e) => e.network.name), networks);
  assert.deepEqual(p.proxy.networks, networks);
  assert.equal(p.postgres.kind, "container");
  assert.deepEqual(p.postgres.kind === "container" ? p.postgres.networks : [], networks.slice(0, 4));
  assert.deepEqual(p.environments.flatMap(containerNames), [
    "filter-ical-frontend-production",
    "filter-ical-backend-production-1",
    "filter-ical-backend-production-2",
    "filter-ical-frontend-staging",
    "filter-ical-backend-staging",
    "gabs-massage-backend-production",
    "gabs-massage-backend-staging",
    "paiss-web-production",
    "paiss-web-staging",
  ]);
  assert.deepEqual(
    p.environments.flatMap((e) => e.routes.map((r) => `${e.app}/${e.env} ${r.path} → ${r.upstream} [${r.containers.join(" ")}] ${r.limit.name}`)),
    [
      "filter-ical/production ^/(api|domains|filter|subscribe|ical) → filter_ical_backend_production [filter-ical-backend-production-1 filter-ical-backend-production-2] api",
      "filter-ical/production / → filter_ical_frontend_production [filter-ical-frontend-production] general",
      "filter-ical/staging ^/(api|domains|filter|subscribe|ical) → filter_ical_backend_staging [filter-ical-backend-staging] api",
      "filter-ical/staging / → filter_ical_frontend_staging [filter-ical-frontend-staging] general",
      "gabs-massage/production / → gabs_massage_backend_production [gabs-massage-backend-production] api",
      "gabs-massage/staging / → gabs_massage_backend_staging [gabs-massage-backend-staging] api",
      "paiss/production / → paiss_web_production [paiss-web-production] general",
      "paiss/staging / → paiss_web_staging [paiss-web-staging] general",
    ],
  );
  assert.deepEqual(
    p.environments.map((e) => e.database?.name ?? null),
    ["filter_ical_production", "filter_ical_staging", "gabs_massage_production", "gabs_massage_staging", null, null],
  );
  assert.deepEqual(
    p.environments.map((e) => e.domains),
    [
      ["filter-ical.localhost", "www.filter-ical.localhost"],
      ["staging.filter-ical.localhost"],
      ["gabs-massage.localhost"],
      ["staging.gabs-massage.localhost"],
      ["paiss.localhost", "www.paiss.localhost"],
      ["staging.paiss.localhost"],
    ],
  );
  // Local sources resolve from the app file's directory to the example's src/.
  const image = p.environments[0]!.components[0]!.image;
  assert.deepEqual(image.kind === "build" ? image.source : null, { kind: "dir", dir: `${EXAMPLE}/src/filter-ical` });
});

test("formatPlan prints a small plan line by line", () => {
  const spec = specOf("name: small\nproxy: { httpPort: 8080, httpsPort: 8443 }\n", {
    "apps/blog.yaml": `
name: blog
source: { path: ../src/blog }
components:
  web:
    build: web
    port: 8080
    health: /health
    replicas: 2
    release: [node, migrate.js]
    database: true
  cache: { image: "redis:7", port: 6379, resources: { memory: 64M } }
routes:
  - { path: ^/api/, to: web, limit: api }
  - { path: /, to: web }
environments:
  production: { domains: [blog.example.org, www.blog.example.org] }
`,
  });
  assert.equal(
    formatPlan(planPlatform(spec, { root: ROOT }), ROOT),
    [
      "platform small: 1 environment",
      "  proxy     berth-small-proxy  berth-nginx:1.22  http 0.0.0.0:8080  https 0.0.0.0:8443  networks 1",
      "  postgres  berth-small-postgres  postgres:15-bookworm  volume berth-small-postgres-data  networks 1",
      "",
      "blog/production",
      "  network   berth-blog-production",
      "  domains   blog.example.org, www.blog.example.org  tls self-signed",
      "  database  blog_production  role blog_production  connections 20  statement timeout 30s",
      "  container blog-web-production-1  build src/blog/web  port 8080  cpus 0.5 memory 256M pids 256  health /health every 5s  DATABASE_URL",
      "  container blog-web-production-2  build src/blog/web  port 8080  cpus 0.5 memory 256M pids 256  health /health every 5s  DATABASE_URL",
      "  release   web: node migrate.js",
      "  container blog-cache-production  redis:7  port 6379  cpus 0.5 memory 64M pids 256  health / every 5s",
      "  route     ^/api/ → web:8080  limit api (20 r/s, burst 20)",
      "  route     / → web:8080  limit general (100 r/s, burst 50)",
      "",
    ].join("\n"),
  );
});

test("formatPlan: an external server, maintenance, and a git source", () => {
  const spec = specOf("name: ext\npostgres: { url: postgres://admin:secret@db/postgres }\ntls: { mode: \"off\" }\n", { "apps/static.yaml": STATIC.replace("headers: { hsts: true }", "maintenance: true") });
  const text = formatPlan(planPlatform(spec, { root: ROOT }), ROOT);
  assert.deepEqual(text.split("\n").slice(0, 7), [
    "platform ext: 1 environment",
    "  proxy     berth-ext-proxy  berth-nginx:1.22  http 0.0.0.0:80  https 0.0.0.0:443  networks 1",
    "  postgres  external server",
    "",
    "static/production  (maintenance)",
    "  network   berth-static-production",
    "  domains   static.example.org  tls off",
  ]);
  assert.ok(text.includes("  container static-site-production  build https://git.example.org/static.git#v2/site  port 80"), text);
  assert.ok(!text.includes("secret"), "the admin password must not be printed");
});
