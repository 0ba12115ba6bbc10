// Valid specs and the exact normalised spec berth works from: defaults filled in, shorthands
// expanded, units converted (memory to bytes, durations to milliseconds, CPUs to numbers).
import { test } from "node:test";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { formatIssue } from "../../src/spec/issues.js";
import { readSpecFiles } from "../../src/spec/load.js";
import { validateSpec, type Spec } from "../../src/spec/validate.js";

const HOST = { cpus: 2, memoryBytes: 4 * 1024 ** 3 };
const MiB = 1024 ** 2;
const GiB = 1024 ** 3;
const EXAMPLE = fileURLToPath(new URL("../../examples/reference-platform", import.meta.url));

function validate(platform: string, apps: Record<string, string> = {}): Spec {
  const result = validateSpec({ platform: { file: "platform.yaml", text: platform }, apps: Object.entries(apps).map(([file, text]) => ({ file, text })) }, HOST);
  if (!result.ok) assert.fail(`unexpected problems:\n${result.issues.map(formatIssue).join("\n")}`);
  return result.spec;
}

const DEFAULT_PLATFORM = {
  name: "test",
  proxy: {
    bind: "0.0.0.0",
    httpPort: 80,
    httpsPort: 443,
    image: "berth-nginx:1.22",
    rateLimits: { general: { rate: 100, burst: 50 }, api: { rate: 20, burst: 20 } },
  },
  postgres: { maxConnections: 100, reservedConnections: 5 },
  tls: { mode: "self-signed" },
  backup: { schedule: "0 2 * * *", retention: { days: 7 }, encrypt: false, targets: [] },
  alerts: { channels: [] },
  defaults: {
    resources: { cpus: 0.5, memory: 256 * MiB, pids: 256 },
    health: { interval: 5000, timeout: 3000, retries: 3, startPeriod: 30_000 },
  },
};

const DEFAULT_HEADERS = {
  csp: "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'self'",
  frameOptions: "SAMEORIGIN",
  referrerPolicy: "strict-origin-when-cross-origin",
  hsts: false,
};

const DEFAULT_DATABASE = { connectionLimit: 20, statementTimeout: 30_000, idleInTransactionTimeout: 60_000 };

test("a platform file with only a name gets every default", () => {
  assert.deepEqual(validate("name: test\n"), { platform: DEFAULT_PLATFORM, apps: [] });
});

test("a platform file with every field set keeps them, in units berth uses", () => {
  const spec = validate(`
name: prod-1
proxy:
  bind: 127.0.0.1
  httpPort: 8080
  httpsPort: 8443
  image: berth-nginx:1.22
  rateLimits:
    api: { rate: 10, burst: 0 }
postgres:
  url: postgresql://berth:secret@db.internal:5432/postgres
  maxConnections: 200
  reservedConnections: 10
tls:
  mode: acme
  email: ops@example.org
backup:
  schedule: "30 3 * * 1-5"
  retention: { days: 30 }
  encrypt: true
  targets:
    - { type: dir, path: /var/backups/berth }
    - { type: s3, bucket: berth-backups, endpoint: "https://s3.example.org" }
alerts:
  channels:
    - { type: webhook, name: ops, url: "https://hooks.example.org/berth" }
    - { type: email, name: mail, to: [ops@example.org] }
defaults:
  resources: { cpus: "1.5", memory: 1G, pids: 512 }
  health: { interval: 10s, timeout: 1500ms, retries: 5 }
`);
  assert.deepEqual(spec.platform, {
    name: "prod-1",
    proxy: { bind: "127.0.0.1", httpPort: 8080, httpsPort: 8443, image: "berth-nginx:1.22", rateLimits: { api: { rate: 10, burst: 0 } } },
    postgres: { url: "postgresql://berth:secret@db.internal:5432/postgres", maxConnections: 200, reservedConnections: 10 },
    tls: { mode: "acme", email: "ops@example.org", directory: "https://acme-v02.api.letsencrypt.org/directory" },
    backup: {
      schedule: "30 3 * * 1-5",
      retention: { days: 30 },
      encrypt: true,
      targets: [
        { type: "dir", path: "/var/backups/berth" },
        { type: "s3", bucket: "berth-backups", endpoint: "https://s3.example.org", region: "us-east-1", prefix: "" },
      ],
    },
    alerts: {
      channels: [
        { type: "webhook", name: "ops", url: "https://hooks.example.org/berth" },
        { type: "email", name: "mail", to: ["ops@example.org"] },
      ],
    },
    defaults: { resources: { cpus: 1.5, memory: GiB, pids: 512 }, health: { interval: 10_000, timeout: 1500, retries: 5, startPeriod: 30_000 } },
  });
});

test("an app with shorthands is expanded: build dir, health path, units, env values, domains", () => {
  const spec = validate("name: test\n", {
    "apps/shop.yaml": `
name: shop
source: { path: ../src/shop }
components:
  web:
    build: web
    port: 8080
    health: /health.txt
    resources: { memory: 128M }
  api:
    build: { context: services/api, dockerfile: Dockerfile.prod }
    port: 3000
    health: { path: /healthz, interval: 2s, timeout: 500ms, retries: 2, startPeriod: 1m }
    resources: { cpus: 0.25, memory: 1.5G, pids: 64 }
    replicas: 3
    env: { LOG_LEVEL: info, WORKERS: 4, DEBUG: false }
    release: [node, migrate.js]
    database: true
    capabilities: [NET_BIND_SERVICE]
    user: "1000:1000"
routes:
  - { path: "^/(api|auth)/", to: api, limit: api }
  - { path: /, to: web }
headers:
  hsts: true
environments:
  production:
    domains: [Shop.Example.ORG, www.shop.example.org]
    components:
      api: { replicas: 4, resources: { memory: 2G }, env: { WORKERS: 8 } }
  staging:
    domains: [staging.shop.example.org]
    env: { LOG_LEVEL: debug }
    maintenance: true
`,
  });
  assert.deepEqual(spec.apps, [
    {
      file: "apps/shop.yaml",
      spec: {
        name: "shop",
        source: { path: "../src/shop" },
        components: {
          web: {
            build: { context: "web", dockerfile: "Dockerfile" },
            port: 8080,
            health: { path: "/health.txt" },
            resources: { memory: 128 * MiB },
            replicas: 1,
            env: {},
            database: false,
            capabilities: [],
          },
          api: {
            build: { context: "services/api", dockerfile: "Dockerfile.prod" },
            port: 3000,
            health: { path: "/healthz", interval: 2000, timeout: 500, retries: 2, startPeriod: 60_000 },
            resources: { cpus: 0.25, memory: 1.5 * GiB, pids: 64 },
            replicas: 3,
            env: { LOG_LEVEL: "info", WORKERS: "4", DEBUG: "false" },
            release: ["node", "migrate.js"],
            database: true,
            capabilities: ["NET_BIND_SERVICE"],
            user: "1000:1000",
          },
        },
        routes: [
          { path: "^/(api|auth)/", to: "api", limit: "api" },
          { path: "/", to: "web", limit: "general" },
        ],
        environments: {
          production: {
            domains: ["shop.example.org", "www.shop.example.org"],
            env: {},
            components: { api: { replicas: 4, resources: { memory: 2 * GiB }, env: { WORKERS: "8" } } },
          },
          staging: {
            domains: ["staging.shop.example.org"],
            env: { LOG_LEVEL: "debug" },
            components: {},
            maintenance: true,
          },
        },
        headers: { ...DEFAULT_HEADERS, hsts: true },
        maintenance: false,
        secrets: { as: "env" },
        database: DEFAULT_DATABASE,
      },
    },
  ]);
});

test("an app from git with an image component, hsts as a mapping and database limits", () => {
  const spec = validate("name: test\n", {
    "apps/blog.yaml": `
name: blog
source: { git: "https://git.example.org/blog.git" }
components:
  web: { build: ., port: 80 }
  cache: { image: "redis:7", port: 6379, health: { retries: 10 }, secrets: { as: env } }
routes:
  - { path: /, to: web }
headers:
  frameOptions: DENY
  hsts: { maxAge: 1h, includeSubdomains: true }
maintenance: true
secrets: { as: files }
database: { connectionLimit: 5, statementTimeout: 1m30s, idleInTransactionTimeout: 90 }
environments:
  production: { domains: [blog.example.org] }
`,
  });
  assert.deepEqual(spec.apps[0]!.spec, {
    name: "blog",
    source: { git: "https://git.example.org/blog.git", ref: "main" },
    components: {
      web: { build: { context: ".", dockerfile: "Dockerfile" }, port: 80, replicas: 1, env: {}, database: false, capabilities: [] },
      cache: { image: "redis:7", port: 6379, health: { path: "/", retries: 10 }, replicas: 1, env: {}, database: false, capabilities: [], secrets: { as: "env" } },
    },
    routes: [{ path: "/", to: "web", limit: "general" }],
    environments: { production: { domains: ["blog.example.org"], env: {}, components: {} } },
    headers: { ...DEFAULT_HEADERS, frameOptions: "DENY", hsts: { maxAge: 3_600_000, includeSubdomains: true, preload: false } },
    maintenance: true,
    secrets: { as: "files" },
    database: { connectionLimit: 5, statementTimeout: 90_000, idleInTransactionTimeout: 90_000 },
  });
});

test("manual tls with certificate files per environment", () => {
  const spec = validate("name: test\ntls: { mode: manual }\n", {
    "apps/a.yaml": `
name: a
components:
  web: { image: "nginx:1.27", port: 8080 }
routes:
  - { path: /, to: web }
environments:
  production:
    domains: [a.example.org]
    tls: { cert: /etc/berth/a.pem, key: /etc/berth/a.key }
`,
  });
  assert.deepEqual(spec.platform.tls, { mode: "manual" });
  assert.deepEqual(spec.apps[0]!.spec.environments.production!.tls, { cert: "/etc/berth/a.pem", key: "/etc/berth/a.key" });
});

test("apps keep the order of their files, whatever their names", () => {
  const app = (name: string) => `name: ${name}\ncomponents:\n  web: { image: nginx, port: 80 }\nroutes:\n  - { path: /, to: web }\nenvironments:\n  prod: { domains: [${name}.localhost] }\n`;
  const spec = validate("name: test\n", { "apps/a.yaml": app("zeta"), "apps/b.yaml": app("alpha") });
  assert.deepEqual(
    spec.apps.map((a) => [a.file, a.spec.name]),
    [
      ["apps/a.yaml", "zeta"],
      ["apps/b.yaml", "alpha"],
    ],
  );
});

test("the reference platform on disk validates with no problems", async () => {
  const { root, files } = await readSpecFiles(EXAMPLE);
  assert.equal(root, EXAMPLE);
  assert.deepEqual(
    files.apps.map((a) => a.file),
    ["apps/filter-ical.yaml", "apps/gabs-massage.yaml", "apps/paiss.yaml"],
  );
  const result = validateSpec(files, HOST);
  assert.deepEqual(result.ok ? [] : result.issues.map(formatIssue), []);
  assert.ok(result.ok);
  assert.deepEqual(result.spec.platform, {
    ...DEFAULT_PLATFORM,
    name: "reference",
    proxy: { ...DEFAULT_PLATFORM.proxy, bind: "127.0.0.1", httpPort: 8080, httpsPort: 8443, image: "berth-nginx:1.22" },
    postgres: { image: "berth-postgres:15", maxConnections: 100, reservedConnections: 5 },
    backup: { ...DEFAULT_PLATFORM.backup, targets: [{ type: "dir", path: "/var/lib/berth/backups" }] },
    alerts: { channels: [{ type: "webhook", name: "ops", url: "http://127.0.0.1:9099/alerts" }] },
  });
  assert.deepEqual(result.spec.apps.find((a) => a.spec.name === "paiss"), {
    file: "apps/paiss.yaml",
    spec: {
      name: "paiss",
      source: { path: "../src/paiss" },
      components: {
        web: {
          build: { context: "web", dockerfile: "Dockerfile" },
          port: 8080,
          health: { path: "/health.txt" },
          resources: { cpus: 0.25, memory: 64 * MiB },
          replicas: 1,
          env: {},
          database: false,
          capabilities: [],
        },
      },
      routes: [{ path: "/", to: "web", limit: "general" }],
      environments: {
        production: { domains: ["paiss.localhost", "www.paiss.localhost"], env: {}, components: {} },
        staging: { domains: ["staging.paiss.localhost"], env: {}, components: {} },
      },
      headers: DEFAULT_HEADERS,
      maintenance: false,
      secrets: { as: "env" },
      database: DEFAULT_DATABASE,
    },
  });
  const gabs = result.spec.apps.find((a) => a.spec.name === "gabs-massage")!;
  assert.deepEqual(gabs.spec.database, { connectionLimit: 10, statementTimeout: 15_000, idleInTransactionTimeout: 60_000 });
});
