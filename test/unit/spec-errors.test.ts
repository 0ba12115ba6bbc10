// Every kind of spec mistake with the exact lines berth prints for it: file:line:column,
// the field path, what was expected and what was found. Positions are checked too, so a
// message that points at the wrong line fails here.
import { test } from "node:test";
import assert from "node:assert/strict";
import { formatIssue } from "../../src/spec/issues.js";
import { validateSpec } from "../../src/spec/validate.js";

const HOST = { cpus: 2, memoryBytes: 4 * 1024 ** 3 };
const PLATFORM = "name: test\n";

/** Strips the first line break and the common indentation, so YAML reads naturally in the table. */
function yaml(strings: TemplateStringsArray, ...values: unknown[]): string {
  const text = String.raw({ raw: strings }, ...values).replace(/^\n/, "");
  const lines = text.split("\n");
  const indent = Math.min(...lines.filter((line) => line.trim() !== "").map((line) => /^ */.exec(line)![0].length));
  return lines.map((line) => line.slice(indent)).join("\n").replace(/[ ]+$/, "");
}

interface Case {
  name: string;
  /** The platform file; a minimal valid one when absent. */
  platform?: string;
  /** App files by their path in the spec directory. */
  apps?: Record<string, string>;
  /** Every formatted problem, in the order berth prints them. */
  expected: string[];
}

const WEB = yaml`
  name: a
  components:
    web: { image: nginx:1.27, port: 8080 }
  routes:
    - { path: /, to: web }
  environments:
    production: { domains: [a.localhost] }
`;

const cases: Case[] = [
  {
    name: "YAML syntax error: an unclosed flow mapping",
    apps: {
      "apps/a.yaml": yaml`
        name: a
        components:
          web: { image: nginx:1.27, port: 8080
        routes:
          - { path: /, to: web }
      `,
    },
    expected: [
      `apps/a.yaml:3:8 invalid YAML: "{" is not closed; a flow mapping ends with "}"`,
    ],
  },
  {
    name: "YAML duplicate key",
    apps: {
      "apps/a.yaml": yaml`
        name: a
        components:
          web:
            image: nginx:1.27
            port: 8080
            port: 8081
        routes:
          - { path: /, to: web }
        environments:
          production: { domains: [a.localhost] }
      `,
    },
    expected: [
      `apps/a.yaml:6:5 invalid YAML: duplicate key "port"; a key may appear only once in a mapping`,
    ],
  },
  {
    name: "YAML tab indentation",
    platform: "name: test\nproxy:\n\thttpPort: 80\n",
    expected: [
      `platform.yaml:3:1 invalid YAML: tabs are not allowed as indentation; indent with spaces`,
    ],
  },
  {
    name: "YAML with two documents",
    platform: yaml`
      name: test
      ---
      name: other
    `,
    expected: [
      `platform.yaml:2:1 invalid YAML: more than one document (a second '---'); a spec file holds one document`,
    ],
  },
  {
    name: "YAML alias without anchor",
    platform: yaml`
      name: test
      proxy: *proxy
    `,
    expected: [
      `platform.yaml:2:8 invalid YAML: alias *proxy has no anchor &proxy before it`,
    ],
  },
  {
    name: "empty app file",
    apps: { "apps/a.yaml": "" },
    expected: [
      `apps/a.yaml:1:1 expected a mapping (an app file), got an empty file`,
    ],
  },
  {
    name: "app file that is a list",
    apps: { "apps/a.yaml": "- name: a\n" },
    expected: [
      `apps/a.yaml:1:1 expected a mapping (an app file), got a list`,
    ],
  },
  {
    name: "wrong types at several depths",
    platform: yaml`
      name: test
      proxy: 8080
      postgres:
        maxConnections: many
    `,
    apps: {
      "apps/a.yaml": yaml`
        name: 5
        components:
          web:
            image: nginx:1.27
            port: 8080
            replicas: two
            env: [LOG_LEVEL=info]
            release: node migrate.js
            database: yes
        routes:
          - { path: /, to: web }
        environments:
          production: { domains: a.localhost }
          staging:
            domains: [staging.a.localhost]
            components:
              web: { replicas: 1.5, env: { LOG_LEVEL: [info] } }
      `,
    },
    expected: [
      `apps/a.yaml:1:7 name: expected a lowercase name of letters, digits and '-' (starting with a letter, not ending with '-'), got 5`,
      `apps/a.yaml:6:15 components.web.replicas: expected a replica count (a whole number 1-20), got "two"`,
      `apps/a.yaml:7:10 components.web.env: expected a mapping of variable name to value, got a list`,
      `apps/a.yaml:8:14 components.web.release: expected a command as a list of arguments, like [node, migrate.js], got "node migrate.js"`,
      `apps/a.yaml:9:15 components.web.database: expected true or false, got "yes"`,
      `apps/a.yaml:13:26 environments.production.domains: expected a list of domain names, got "a.localhost"`,
      `apps/a.yaml:17:24 environments.staging.components.web.replicas: expected a replica count (a whole number 1-20), got 1.5`,
      `apps/a.yaml:17:47 environments.staging.components.web.env.LOG_LEVEL: expected a string, number or boolean value, got a list`,
      `platform.yaml:2:8 proxy: expected a mapping, got 8080`,
      `platform.yaml:4:19 postgres.maxConnections: expected a connection count (a whole number 1-10000), got "many"`,
    ],
  },
  {
    name: "missing required fields",
    platform: yaml`
      proxy: { httpPort: 8080 }
    `,
    apps: {
      "apps/a.yaml": yaml`
        components:
          web:
            image: nginx:1.27
        environments:
          production: {}
      `,
    },
    expected: [
      `apps/a.yaml:1:1 name: missing field; expected a lowercase name of letters, digits and '-' (starting with a letter, not ending with '-')`,
      `apps/a.yaml:1:1 routes: missing field; expected a list of routes`,
      `apps/a.yaml:2:3 components.web.port: missing field; expected a port number 1-65535`,
      `apps/a.yaml:5:3 environments.production.domains: missing field; expected a list of domain names`,
      `platform.yaml:1:1 name: missing field; expected a lowercase name of letters, digits and '-' (starting with a letter, not ending with '-')`,
    ],
  },
  {
    name: "unknown keys with did-you-mean",
    platform: yaml`
      name: test
      proxy:
        rateLimit: { api: { rate: 5, burst: 5 } }
    `,
    apps: {
      "apps/a.yaml": yaml`
        name: a
        components:
          web:
            image: nginx:1.27
            prot: 8080
            port: 8080
            healthcheck: /health
        routes:
          - { path: /, to: web }
        enviroments:
          production: { domains: [a.localhost] }
      `,
    },
    expected: [
      `apps/a.yaml:5:5 components.web.prot: unknown field; did you mean "port"?`,
      `apps/a.yaml:7:5 components.web.healthcheck: unknown field; known fields are build, image, port, health, resources, replicas, env, release, database, capabilities, user, secrets`,
      `apps/a.yaml:10:1 enviroments: unknown field; did you mean "environments"?`,
      `platform.yaml:3:3 proxy.rateLimit: unknown field; did you mean "rateLimits"?`,
    ],
  },
  {
    name: "bad tls mode with did-you-mean",
    platform: yaml`
      name: test
      tls:
        mode: acm
    `,
    expected: [
      `platform.yaml:3:9 tls.mode: expected one of self-signed, acme, manual, off, got "acm"; did you mean "acme"?`,
    ],
  },
  {
    name: "tls without mode, an s3 backup target without bucket",
    platform: yaml`
      name: test
      tls: {}
      backup:
        targets:
          - { type: dir, path: /backups }
          - { type: s3 }
    `,
    expected: [
      `platform.yaml:2:1 tls.mode: missing field; expected one of self-signed, acme, manual, off`,
      `platform.yaml:6:7 backup.targets[1].bucket: missing field; expected an S3 bucket name`,
    ],
  },
  {
    name: "tls given as a string",
    platform: "name: test\ntls: acme\n",
    expected: [
      `platform.yaml:2:6 tls: expected a mapping whose mode is one of self-signed, acme, manual, off, got "acme"`,
    ],
  },
  {
    name: "memory not a size, cpus 0",
    platform: yaml`
      name: test
      defaults:
        resources: { memory: lots, cpus: 0, pids: 0 }
    `,
    expected: [
      `platform.yaml:3:24 defaults.resources.memory: expected a memory size like 256M or 1G, got "lots"`,
      `platform.yaml:3:36 defaults.resources.cpus: expected a CPU count greater than 0, like 0.5 or 2, got 0`,
      `platform.yaml:3:45 defaults.resources.pids: expected a process limit (a whole number 1-100000), got 0`,
    ],
  },
  {
    name: "memory and cpus beyond the host",
    platform: yaml`
      name: test
      defaults:
        resources: { memory: 5G, cpus: 3 }
    `,
    apps: {
      "apps/a.yaml": yaml`
        name: a
        components:
          web:
            image: nginx:1.27
            port: 8080
            resources: { memory: 8G, cpus: 4 }
        routes:
          - { path: /, to: web }
        environments:
          production:
            domains: [a.localhost]
            components:
              web: { resources: { cpus: 2.5, memory: 4097M } }
      `,
    },
    expected: [
      `apps/a.yaml:6:26 components.web.resources.memory: expected at most 4G (the memory of this host), got 8G`,
      `apps/a.yaml:6:36 components.web.resources.cpus: expected at most 2 (the CPUs of this host), got 4`,
      `apps/a.yaml:13:33 environments.production.components.web.resources.cpus: expected at most 2 (the CPUs of this host), got 2.5`,
      `apps/a.yaml:13:46 environments.production.components.web.resources.memory: expected at most 4G (the memory of this host), got 4097M`,
      `platform.yaml:3:24 defaults.resources.memory: expected at most 4G (the memory of this host), got 5G`,
      `platform.yaml:3:34 defaults.resources.cpus: expected at most 2 (the CPUs of this host), got 3`,
    ],
  },
  {
    name: "bad durations",
    platform: yaml`
      name: test
      defaults:
        health: { interval: soon, timeout: -1 }
    `,
    apps: {
      "apps/a.yaml": yaml`
        name: a
        components:
          web:
            image: nginx:1.27
            port: 8080
            health: { path: /health, interval: 5x }
        routes:
          - { path: /, to: web }
        database: { statementTimeout: 1y }
        environments:
          production: { domains: [a.localhost] }
      `,
    },
    expected: [
      `apps/a.yaml:6:40 components.web.health.interval: expected a duration like 500ms, 2s or 1m, got "5x"`,
      `apps/a.yaml:9:31 database.statementTimeout: expected a duration like 500ms, 2s or 1m, got "1y"`,
      `platform.yaml:3:23 defaults.health.interval: expected a duration like 500ms, 2s or 1m, got "soon"`,
      `platform.yaml:3:38 defaults.health.timeout: expected a duration like 500ms, 2s or 1m, got -1`,
    ],
  },
  {
    name: "ports 0, 70000 and 80a",
    platform: yaml`
      name: test
      proxy: { httpPort: 0, httpsPort: 70000 }
    `,
    apps: {
      "apps/a.yaml": yaml`
        name: a
        components:
          web:
            image: nginx:1.27
            port: 80a
        routes:
          - { path: /, to: web }
        environments:
          production: { domains: [a.localhost] }
      `,
    },
    expected: [
      `apps/a.yaml:5:11 components.web.port: expected a port number 1-65535, got "80a"`,
      `platform.yaml:2:20 proxy.httpPort: expected a port number 1-65535, got 0`,
      `platform.yaml:2:34 proxy.httpsPort: expected a port number 1-65535, got 70000`,
    ],
  },
  {
    name: "httpPort equal to httpsPort",
    platform: yaml`
      name: test
      proxy: { httpPort: 8080, httpsPort: 8080 }
    `,
    expected: [
      `platform.yaml:2:37 proxy.httpsPort: expected a port other than httpPort, got 8080`,
    ],
  },
  {
    name: "invalid domains",
    apps: {
      "apps/a.yaml": yaml`
        name: a
        components:
          web: { image: nginx:1.27, port: 8080 }
        routes:
          - { path: /, to: web }
        environments:
          production: { domains: [a.localhost, "my shop.org", a_b.org, "a.org:8080"] }
          staging: { domains: [] }
      `,
    },
    expected: [
      `apps/a.yaml:7:40 environments.production.domains[1]: expected a domain name like example.org or app.localhost, got "my shop.org"`,
      `apps/a.yaml:7:55 environments.production.domains[2]: expected a domain name like example.org or app.localhost, got "a_b.org"`,
      `apps/a.yaml:7:64 environments.production.domains[3]: expected a domain name like example.org or app.localhost, got "a.org:8080"`,
      `apps/a.yaml:8:23 environments.staging.domains: expected at least one domain name, got an empty list`,
    ],
  },
  {
    name: "a domain used twice across environments of one app and across apps",
    apps: {
      "apps/a.yaml": yaml`
        name: a
        components:
          web: { image: nginx:1.27, port: 8080 }
        routes:
          - { path: /, to: web }
        environments:
          production: { domains: [a.localhost, www.a.localhost] }
          staging: { domains: [A.localhost] }
      `,
      "apps/b.yaml": yaml`
        name: b
        components:
          web: { image: nginx:1.27, port: 8080 }
        routes:
          - { path: /, to: web }
        environments:
          production: { domains: [b.localhost, www.a.localhost] }
      `,
    },
    expected: [
      `apps/a.yaml:8:24 environments.staging.domains[0]: domain "a.localhost" is already used by a/production (apps/a.yaml)`,
      `apps/b.yaml:7:40 environments.production.domains[1]: domain "www.a.localhost" is already used by a/production (apps/a.yaml)`,
    ],
  },
  {
    name: "routes: unknown component, unknown rate-limit class, invalid regex, a path twice",
    apps: {
      "apps/a.yaml": yaml`
        name: a
        components:
          web: { image: nginx:1.27, port: 8080 }
          backend: { image: node:20, port: 3000 }
        routes:
          - { path: /api, to: backnd, limit: api }
          - { path: /ical, to: backend, limit: apii }
          - { path: "^/(api|ical", to: backend }
          - { path: /, to: web }
          - { path: /api, to: backend }
        environments:
          production: { domains: [a.localhost] }
      `,
    },
    expected: [
      `apps/a.yaml:6:23 routes[0].to: no component "backnd" in this app; did you mean "backend"?`,
      `apps/a.yaml:7:40 routes[1].limit: no rate-limit class "apii" in the platform's proxy.rateLimits (general, api); did you mean "api"?`,
      `apps/a.yaml:8:13 routes[2].path: expected a valid regular expression, got "^/(api|ical" (Unterminated group)`,
      `apps/a.yaml:10:13 routes[4].path: path "/api" is already routed by routes[0]`,
    ],
  },
  {
    name: "the default rate-limit class missing from the platform",
    platform: yaml`
      name: test
      proxy:
        rateLimits:
          api: { rate: 20, burst: 20 }
    `,
    apps: { "apps/a.yaml": WEB },
    expected: [
      `apps/a.yaml:5:5 routes[0]: the default rate-limit class "general" is not in the platform's proxy.rateLimits (api); set limit`,
    ],
  },
  {
    name: "route paths with spaces, quotes, ';', '#', or no leading /",
    apps: {
      "apps/a.yaml": yaml`
        name: a
        components:
          web: { image: nginx:1.27, port: 8080 }
        routes:
          - { path: "/my shop", to: web }
          - { path: '/a"b', to: web }
          - { path: "/a;b", to: web }
          - { path: api, to: web }
          - { path: "/a#b", to: web }
        environments:
          production: { domains: [a.localhost] }
      `,
    },
    expected: [
      `apps/a.yaml:5:13 routes[0].path: expected a path prefix starting with / or a regex starting with ^, without spaces, quotes, '#', ';' or braces, got "/my shop"`,
      `apps/a.yaml:6:13 routes[1].path: expected a path prefix starting with / or a regex starting with ^, without spaces, quotes, '#', ';' or braces, got "/a\\"b"`,
      `apps/a.yaml:7:13 routes[2].path: expected a path prefix starting with / or a regex starting with ^, without spaces, quotes, '#', ';' or braces, got "/a;b"`,
      `apps/a.yaml:8:13 routes[3].path: expected a path prefix starting with / or a regex starting with ^, without spaces, quotes, '#', ';' or braces, got "api"`,
      `apps/a.yaml:9:13 routes[4].path: expected a path prefix starting with / or a regex starting with ^, without spaces, quotes, '#', ';' or braces, got "/a#b"`,
    ],
  },
  {
    name: "names that collide once '-' becomes '_'",
    apps: {
      "apps/a-b.yaml": yaml`
        name: a-b
        components:
          web: { image: nginx:1.27, port: 8080 }
        routes:
          - { path: /, to: web }
        environments:
          c: { domains: [ab.localhost] }
      `,
      "apps/a.yaml": yaml`
        name: a
        components:
          web: { image: nginx:1.27, port: 8080 }
        routes:
          - { path: /, to: web }
        environments:
          b-c: { domains: [a.localhost] }
      `,
    },
    expected: [
      `apps/a.yaml:7:3 environments.b-c: network "berth-a-b-c" and database "a_b_c" of a/b-c are also those of a-b/c (apps/a-b.yaml); rename the app or the environment`,
    ],
  },
  {
    name: "container names that collide across apps",
    apps: {
      "apps/a-b.yaml": yaml`
        name: a-b
        components:
          web: { image: nginx:1.27, port: 8080 }
        routes:
          - { path: /, to: web }
        environments:
          production: { domains: [ab.localhost] }
      `,
      "apps/a.yaml": yaml`
        name: a
        components:
          b-web: { image: nginx:1.27, port: 8080 }
        routes:
          - { path: /, to: b-web }
        environments:
          production: { domains: [a.localhost] }
      `,
    },
    expected: [
      `apps/a.yaml:3:3 components.b-web: container name "a-b-web-production" of a/production is also a container of a-b/production (component web, apps/a-b.yaml); rename the component`,
    ],
  },
  {
    name: "a replica's container name that is another environment's",
    apps: {
      "apps/a.yaml": yaml`
        name: a
        components:
          web: { image: nginx:1.27, port: 8080, replicas: 2 }
        routes:
          - { path: /, to: web }
        environments:
          prod: { domains: [a.localhost] }
          prod-1:
            domains: [b.localhost]
            components:
              web: { replicas: 1 }
      `,
    },
    expected: [
      `apps/a.yaml:8:3 environments.prod-1: container name "a-web-prod-1" of a/prod-1 is also a container of a/prod (component web, apps/a.yaml); rename the environment`,
    ],
  },
  {
    name: "reserved app names, the berth- prefix, and one app name in two files",
    apps: {
      "apps/berth.yaml": WEB.replace("name: a", "name: berth").replace("a.localhost", "berth.localhost"),
      "apps/pg.yaml": WEB.replace("name: a", "name: postgres").replace("a.localhost", "pg.localhost"),
      "apps/platform-ui.yaml": WEB.replace("name: a", "name: berth-ui").replace("a.localhost", "ui.localhost"),
      "apps/shop.yaml": WEB.replace("name: a", "name: shop").replace("a.localhost", "shop.localhost"),
      "apps/shop2.yaml": WEB.replace("name: a", "name: shop").replace("a.localhost", "shop2.localhost"),
    },
    expected: [
      `apps/berth.yaml:1:7 name: "berth" is reserved for berth itself; choose another app name`,
      `apps/pg.yaml:1:7 name: "postgres" is reserved for berth itself; choose another app name`,
      `apps/platform-ui.yaml:1:7 name: "berth-ui" starts with "berth-", which is reserved for berth's own containers; choose another app name`,
      `apps/shop2.yaml:1:7 name: app "shop" is already defined in apps/shop.yaml; an app name may be used once`,
    ],
  },
  {
    name: "an environment network that is the platform's control network",
    apps: {
      "apps/test.yaml": WEB.replace("name: a", "name: test").replace("production:", "control:"),
    },
    expected: [
      `apps/test.yaml:7:3 environments.control: network "berth-test-control" of test/control is the platform's own control network; rename the environment`,
    ],
  },
  {
    name: "build without source, neither build nor image, both, DATABASE_URL with database: true",
    apps: {
      "apps/a.yaml": yaml`
        name: a
        components:
          web: { build: web, port: 8080 }
          worker: { port: 9000 }
          api: { build: api, image: node:20, port: 3000 }
          backend:
            image: node:20
            port: 3000
            database: true
            env: { DATABASE_URL: "postgres://me@db/app" }
        routes:
          - { path: /, to: web }
        environments:
          production: { domains: [a.localhost] }
      `,
    },
    expected: [
      `apps/a.yaml:3:10 components.web.build: build needs the app's source: add source: { path } or source: { git, ref } to the app, or use image instead`,
      `apps/a.yaml:4:3 components.worker: expected build (a directory of the source) or image, got neither`,
      `apps/a.yaml:5:10 components.api.build: build needs the app's source: add source: { path } or source: { git, ref } to the app, or use image instead`,
      `apps/a.yaml:5:22 components.api.image: set either build or image, not both`,
      `apps/a.yaml:10:12 components.backend.env.DATABASE_URL: DATABASE_URL is set by berth for components with database: true; remove it`,
    ],
  },
  {
    name: "environment override of an unknown component",
    apps: {
      "apps/a.yaml": yaml`
        name: a
        components:
          web: { image: nginx:1.27, port: 8080 }
        routes:
          - { path: /, to: web }
        environments:
          production:
            domains: [a.localhost]
            components:
              wbe: { replicas: 2 }
      `,
    },
    expected: [
      `apps/a.yaml:10:7 environments.production.components.wbe: no component "wbe" in this app; did you mean "web"?`,
    ],
  },
  {
    name: "environment override of a field that cannot be overridden",
    apps: {
      "apps/a.yaml": yaml`
        name: a
        components:
          web: { image: nginx:1.27, port: 8080 }
        routes:
          - { path: /, to: web }
        environments:
          production:
            domains: [a.localhost]
            components:
              web: { port: 8081 }
      `,
    },
    expected: [
      `apps/a.yaml:10:14 environments.production.components.web.port: unknown field; known fields are replicas, resources, env`,
    ],
  },
  {
    name: "tls manual without certificate files, or with a certificate but no key",
    platform: yaml`
      name: test
      tls: { mode: manual }
    `,
    apps: {
      "apps/a.yaml": yaml`
        name: a
        components:
          web: { image: nginx:1.27, port: 8080 }
        routes:
          - { path: /, to: web }
        environments:
          production: { domains: [a.localhost] }
          staging:
            domains: [staging.a.localhost]
            tls: { cert: /etc/berth/staging.pem, key: /etc/berth/staging.key }
      `,
      "apps/b.yaml": yaml`
        name: b
        components:
          web: { image: nginx:1.27, port: 8080 }
        routes:
          - { path: /, to: web }
        environments:
          production:
            domains: [b.localhost]
            tls: { cert: /etc/berth/b.pem }
      `,
    },
    expected: [
      `apps/a.yaml:7:3 environments.production: tls.mode is manual in the platform file, so this environment needs tls: { cert, key }`,
      `apps/b.yaml:9:5 environments.production.tls.key: missing field; expected a key file path`,
    ],
  },
  {
    name: "certificate files while tls is not manual",
    apps: {
      "apps/a.yaml": yaml`
        name: a
        components:
          web: { image: nginx:1.27, port: 8080 }
        routes:
          - { path: /, to: web }
        environments:
          production:
            domains: [a.localhost]
            tls: { cert: /c.pem, key: /k.pem }
      `,
    },
    expected: [
      `apps/a.yaml:9:5 environments.production.tls: certificate files are only read when the platform's tls.mode is manual (it is self-signed)`,
    ],
  },
  {
    name: "postgres image and url both; reserved connections not below max; an alert channel name twice",
    platform: yaml`
      name: test
      postgres:
        image: postgres:16
        url: postgres://admin@db.internal/postgres
        maxConnections: 10
        reservedConnections: 10
      alerts:
        channels:
          - { type: webhook, name: ops, url: "http://127.0.0.1:9099/alerts" }
          - { type: email, name: ops, to: [ops@example.org] }
    `,
    expected: [
      `platform.yaml:4:3 postgres.url: set either postgres.image (a container berth runs) or postgres.url (an external server), not both`,
      `platform.yaml:6:24 postgres.reservedConnections: expected fewer than maxConnections (10), got 10`,
      `platform.yaml:10:28 alerts.channels[1].name: alert channel "ops" is defined twice`,
    ],
  },
  {
    name: "bad cron schedules",
    platform: yaml`
      name: test
      backup: { schedule: "every night" }
    `,
    expected: [
      `platform.yaml:2:21 backup.schedule: expected a cron schedule of 5 fields like "0 2 * * *", got "every night" (2 fields instead of 5)`,
    ],
  },
  {
    name: "cron field out of range",
    platform: yaml`
      name: test
      backup: { schedule: "0 25 * * *" }
    `,
    expected: [
      `platform.yaml:2:21 backup.schedule: expected a cron schedule of 5 fields like "0 2 * * *", got "0 25 * * *" (hour 25 is outside 0-23)`,
    ],
  },
  {
    name: "names with uppercase, underscore, trailing dash or too long",
    platform: "name: My_Platform\n",
    apps: {
      "apps/a.yaml": yaml`
        name: Shop
        components:
          Web: { image: nginx:1.27, port: 8080 }
          api_v2: { image: node:20, port: 3000 }
        routes:
          - { path: /, to: Web }
        environments:
          prod-: { domains: [a.localhost] }
          a-very-long-environment-name: { domains: [b.localhost] }
      `,
    },
    expected: [
      `apps/a.yaml:1:7 name: expected a lowercase name of letters, digits and '-' (starting with a letter, not ending with '-'), got "Shop"`,
      `apps/a.yaml:3:3 components.Web: expected a lowercase name of letters, digits and '-' (starting with a letter, not ending with '-'), got "Web"`,
      `apps/a.yaml:4:3 components.api_v2: expected a lowercase name of letters, digits and '-' (starting with a letter, not ending with '-'), got "api_v2"`,
      `apps/a.yaml:6:20 routes[0].to: expected a lowercase name of letters, digits and '-' (starting with a letter, not ending with '-'), got "Web"`,
      `apps/a.yaml:8:3 environments.prod-: expected a lowercase name of letters, digits and '-' (starting with a letter, not ending with '-'), got "prod-"`,
      `apps/a.yaml:9:3 environments.a-very-long-environment-name: expected a name of at most 20 characters, got "a-very-long-environment-name"`,
      `platform.yaml:1:7 name: expected a lowercase name of letters, digits and '-' (starting with a letter, not ending with '-'), got "My_Platform"`,
    ],
  },
  {
    name: "empty components, routes and environments",
    apps: {
      "apps/a.yaml": yaml`
        name: a
        components: {}
        routes: []
        environments: {}
      `,
    },
    expected: [
      `apps/a.yaml:2:13 components: expected at least one component, got an empty mapping`,
      `apps/a.yaml:3:9 routes: expected at least one route, got an empty list`,
      `apps/a.yaml:4:15 environments: expected at least one environment, got an empty mapping`,
    ],
  },
  {
    name: "components, routes and environments left blank",
    apps: {
      "apps/a.yaml": yaml`
        name: a
        components:
        routes:
        environments:
      `,
    },
    expected: [
      `apps/a.yaml:2:1 components: expected a mapping of component name to component, got an empty value`,
      `apps/a.yaml:3:1 routes: expected a list of routes, got an empty value`,
      `apps/a.yaml:4:1 environments: expected a mapping of environment name to environment, got an empty value`,
    ],
  },
  {
    name: "shorthands given bad values; a health path a shell would read",
    apps: {
      "apps/a.yaml": yaml`
        name: a
        source: { path: . }
        components:
          web: { build: ../web, port: 8080, health: health }
          api: { build: { context: api, dockerfile: /etc/Dockerfile }, port: 3000, health: 5 }
          worker: { build: { dockerfle: Dockerfile.worker }, port: 9000 }
          metrics: { image: "prom/statsd-exporter", port: 9102, health: "/$(reboot)" }
        routes:
          - { path: /, to: web }
        environments:
          production: { domains: [a.localhost] }
      `,
    },
    expected: [
      `apps/a.yaml:4:17 components.web.build: expected a relative directory inside the app's source (no '..'), got "../web"`,
      `apps/a.yaml:4:45 components.web.health: expected an HTTP path starting with /, of letters, digits and - . _ ~ % / ? = & + , : @, got "health"`,
      `apps/a.yaml:5:45 components.api.build.dockerfile: expected a relative Dockerfile path (no '..'), got "/etc/Dockerfile"`,
      `apps/a.yaml:5:84 components.api.health: expected a path like /health, or a mapping with path, interval, timeout, retries, got 5`,
      `apps/a.yaml:6:13 components.worker.build.context: missing field; expected a directory inside the app's source`,
      `apps/a.yaml:6:22 components.worker.build.dockerfle: unknown field; did you mean "dockerfile"?`,
      `apps/a.yaml:7:65 components.metrics.health: expected an HTTP path starting with /, of letters, digits and - . _ ~ % / ? = & + , : @, got "/$(reboot)"`,
    ],
  },
  {
    name: "source: mixed forms, unknown form, bad git URL",
    apps: {
      "apps/a.yaml": WEB.replace("name: a\n", 'name: a\nsource: { git: "https://git.example.org/a.git", path: . }\n'),
      "apps/b.yaml": WEB.replace("name: a\n", 'name: b\nsource: { repo: "https://git.example.org/b.git" }\n').replace("a.localhost", "b.localhost"),
      "apps/c.yaml": WEB.replace("name: a\n", 'name: c\nsource: { git: "not a url" }\n').replace("a.localhost", "c.localhost"),
    },
    expected: [
      `apps/a.yaml:2:49 source.path: cannot be used together with "git"; expected a mapping with git (and ref), or with path`,
      `apps/b.yaml:2:11 source.repo: unknown field; expected a mapping with git (and ref), or with path`,
      `apps/c.yaml:2:16 source.git: expected a git URL (https://, ssh://, file://), got "not a url"`,
    ],
  },
  {
    name: "environment variables: bad names and empty values",
    apps: {
      "apps/a.yaml": yaml`
        name: a
        components:
          web:
            image: nginx:1.27
            port: 8080
            env: { my-var: 1, EMPTY: }
        routes:
          - { path: /, to: web }
        environments:
          production: { domains: [a.localhost] }
      `,
    },
    expected: [
      `apps/a.yaml:6:12 components.web.env.my-var: expected an environment variable name of letters, digits and '_', got "my-var"`,
      `apps/a.yaml:6:23 components.web.env.EMPTY: expected a string, number or boolean value, got an empty value`,
    ],
  },
  {
    name: "enum and discriminator values with did-you-mean",
    platform: yaml`
      name: test
      backup:
        targets:
          - { type: dirr, path: /backups }
          - { type: dir, path: backups }
      alerts:
        channels:
          - { type: slack, name: ops }
    `,
    apps: {
      "apps/a.yaml": WEB + "headers: { frameOptions: deny, hsts: { maxAge: 1y } }\n",
    },
    expected: [
      `apps/a.yaml:8:26 headers.frameOptions: expected one of DENY, SAMEORIGIN, got "deny"; did you mean "DENY"?`,
      `apps/a.yaml:8:48 headers.hsts.maxAge: expected a duration like 500ms, 2s or 1m, got "1y"`,
      `platform.yaml:4:15 backup.targets[0].type: expected one of dir, s3, got "dirr"; did you mean "dir"?`,
      `platform.yaml:5:26 backup.targets[1].path: expected an absolute directory path, got "backups"`,
      `platform.yaml:8:15 alerts.channels[0].type: expected one of webhook, email, got "slack"`,
    ],
  },
  {
    name: "every problem of every file at once, sorted by file and line",
    platform: yaml`
      name: test
      proxy: { httpPort: 8080, httpsPort: 8080 }
    `,
    apps: {
      "apps/b.yaml": yaml`
        name: b
        components:
          web: { image: nginx:1.27, prot: 8080 }
        routes:
          - { path: /, to: web }
        environments:
          production: { domains: [b.localhost] }
      `,
      "apps/a.yaml": yaml`
        name: a
        components:
          web: { image: nginx:1.27, port: 8080 }
        routes:
          - { path: /, to: wbe }
        environments:
          production: { domains: [a.localhost] }
          staging: { domains: ["a.localhost"] }
      `,
      "apps/c.yaml": "name: c\ncomponents: {web: {\n",
    },
    expected: [
      `apps/a.yaml:5:20 routes[0].to: no component "wbe" in this app; did you mean "web"?`,
      `apps/a.yaml:8:24 environments.staging.domains[0]: domain "a.localhost" is already used by a/production (apps/a.yaml)`,
      `apps/b.yaml:3:29 components.web.prot: unknown field; did you mean "port"?`,
      `apps/c.yaml:2:13 invalid YAML: "{" is not closed; a flow mapping ends with "}"`,
      `apps/c.yaml:2:19 invalid YAML: "{" is not closed; a flow mapping ends with "}"`,
      `platform.yaml:2:37 proxy.httpsPort: expected a port other than httpPort, got 8080`,
    ],
  },
];

function validate(platform: string, apps: Record<string, string>) {
  return validateSpec({ platform: { file: "platform.yaml", text: platform }, apps: Object.entries(apps).map(([file, text]) => ({ file, text })) }, HOST);
}

test("the base app of the table is valid, so each case fails only for what it changes", () => {
  const result = validate(PLATFORM, { "apps/a.yaml": WEB });
  assert.deepEqual(result.ok ? [] : result.issues.map(formatIssue), []);
});

test("the table has at least 30 cases with distinct names", () => {
  assert.ok(cases.length >= 30, `${cases.length} cases`);
  assert.equal(new Set(cases.map((c) => c.name)).size, cases.length);
});

for (const c of cases) {
  test(c.name, () => {
    const result = validate(c.platform ?? PLATFORM, c.apps ?? {});
    assert.equal(result.ok, false, "the spec should be invalid");
    assert.deepEqual(result.ok ? [] : result.issues.map(formatIssue), c.expected);
  });
}
