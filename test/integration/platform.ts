// A small test platform built from the example sources, on ports and names that cannot
// collide with the demo platform: apply it, probe it, tear it down.
import { mkdtemp } from "node:fs/promises";
import { request } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { planPlatform } from "../../src/plan/plan.js";
import type { PlatformPlan } from "../../src/plan/types.js";
import { applyPlatform, type Change } from "../../src/runtime/apply.js";
import { downPlatform } from "../../src/runtime/down.js";
import { containerPostgres } from "../../src/runtime/postgres.js";
import { loadSpec } from "../../src/spec/index.js";
import type { Docker } from "../../src/host/docker.js";
import { EXAMPLE_ROOT, writeSpec } from "./helpers.js";

export const HTTP_PORT = 18080;
export const HTTPS_PORT = 18443;

export function platformYaml(name: string, extra = ""): string {
  return `name: ${name}
proxy:
  bind: 127.0.0.1
  httpPort: ${HTTP_PORT}
  httpsPort: ${HTTPS_PORT}
  image: berth-nginx:1.22
postgres:
  image: berth-postgres:15
tls:
  mode: self-signed
${extra}`;
}

export function siteYaml(app: string, options: { staging?: boolean; replicas?: number } = {}): string {
  return `name: ${app}
source: { path: ${join(EXAMPLE_ROOT, "src", "paiss")} }
components:
  web:
    build: web
    port: 8080
    health: { path: /health.txt, interval: 1s, timeout: 5s }
    resources: { cpus: 0.25, memory: 64M }
routes:
  - { path: /, to: web, limit: general }
environments:
  production:
    domains: [${app}.test]
    components: { web: { replicas: ${options.replicas ?? 1} } }
${options.staging === false ? "" : `  staging: { domains: [staging.${app}.test] }\n`}`;
}

export function apiYaml(app: string, options: { staging?: boolean } = {}): string {
  return `name: ${app}
source: { path: ${join(EXAMPLE_ROOT, "src", "gabs-massage")} }
components:
  backend:
    build: backend
    port: 3000
    health: { path: /health, interval: 1s, timeout: 5s }
    release: [node, migrate.js]
    database: true
routes:
  - { path: /, to: backend, limit: api }
environments:
  production: { domains: [${app}.test] }
${options.staging === false ? "" : `  staging: { domains: [staging.${app}.test] }\n`}`;
}

export interface TestPlatform {
  specDir: string;
  stateDir: string;
  plan: PlatformPlan;
  apply(options?: { purge?: boolean }): Promise<Change[]>;
  down(options?: { purge?: boolean }): Promise<Change[]>;
}

/** Writes the spec files, plans them, and returns apply/down bound to a fresh state dir. */
export async function testPlatform(docker: Docker, files: Record<string, string>, stateDir?: string): Promise<TestPlatform> {
  const specDir = await writeSpec(files);
  const state = stateDir ?? (await mkdtemp(join(tmpdir(), "berth-state-")));
  const { root, spec } = await loadSpec(specDir);
  const plan = planPlatform(spec, { root });
  // Everything the tests create carries berth.test=true, so cleanup by label finds it.
  const label = (labels: Record<string, string>) => Object.assign(labels, { "berth.test": "true" });
  label(plan.proxy.labels);
  if (plan.postgres.kind === "container") label(plan.postgres.labels);
  for (const env of plan.environments) {
    label(env.network.labels);
    for (const component of env.components) for (const container of component.containers) label(container.labels);
  }
  const deps = { docker, stateDir: state, progress: () => undefined, databases: containerPostgres(docker, state) };
  return {
    specDir,
    stateDir: state,
    plan,
    apply: (options = {}) => applyPlatform(plan, deps, { ...options, healthTimeoutMs: 60_000 }),
    down: (options = {}) => downPlatform(docker, plan, state, { purge: options.purge ?? false }),
  };
}

/**
 * HTTPS GET through the proxy with SNI and Host set to `host`; the certificate is self-signed.
 * A new connection per request: an idle keep-alive connection that nginx closes at a reload
 * races with a request sent on it, which clients retry and tests would count as a failure.
 */
export function httpsGet(host: string, path = "/", headers: Record<string, string> = {}): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: "127.0.0.1", port: HTTPS_PORT, path, servername: host, headers: { host, ...headers }, rejectUnauthorized: false, timeout: 5000, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString("utf8") }));
      },
    );
    req.on("timeout", () => req.destroy(new Error(`GET https://${host}${path} timed out`)));
    req.on("error", reject);
    req.end();
  });
}
