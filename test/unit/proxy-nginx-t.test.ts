// The rendered reference platform, checked by nginx itself: written out in the layout of the
// proxy container (a generation behind `current`, pages, certificates, ACME webroot) inside a
// temp dir, then `nginx -t`. Only skipped when no nginx binary (or its Lua module) is installed.
import assert from "node:assert/strict";
import { execFile, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { describe, test } from "node:test";
import { promisify } from "node:util";
import type { PlatformPlan } from "../../src/plan/types.js";
import { certificateFiles, renderProxyConfig, type ProxyObserved, type ProxyPaths } from "../../src/proxy/render.js";
import { handWrittenNginxConf, minimalNginxConf, requiredDutiesEdits, writeBerthGeneration, type HandWrittenOptions } from "../../bench/proxy-lib.js";
import { everythingObserved, referencePlan } from "./proxy-fixtures.js";

const run = promisify(execFile);

function findNginx(): string | undefined {
  const candidates = ["/usr/sbin/nginx", ...(process.env.PATH ?? "").split(":").map((dir) => join(dir, "nginx"))];
  return candidates.find((path) => existsSync(path));
}

const NGINX = findNginx();
/** The modules the rendered nginx.conf loads, where Debian's libnginx-mod-http-lua installs them. */
const HAS_LUA_MODULE = ["ndk_http_module.so", "ngx_http_lua_module.so"].every((module) => existsSync(join("/usr/lib/nginx/modules", module)));

/**
 * `nginx -t` binds the ports of the config (80, 443). In a network namespace of its own (root
 * can make one) nothing else listening on the host gets in the way.
 */
const HAS_NETWORK_NAMESPACES = process.getuid?.() === 0 && spawnSync("unshare", ["--net", "true"]).status === 0;

async function nginxCheck(prefix: string, conf = join(prefix, "current/nginx.conf")): Promise<{ ok: boolean; output: string }> {
  const check = [NGINX!, "-t", "-q", "-p", prefix, "-c", conf];
  const [command, ...args] = HAS_NETWORK_NAMESPACES ? ["unshare", "--net", ...check] : check;
  try {
    const { stdout, stderr } = await run(command!, args);
    return { ok: true, output: stdout + stderr };
  } catch (error) {
    const failure = error as { stdout?: string; stderr?: string; message: string };
    return { ok: false, output: `${failure.stdout ?? ""}${failure.stderr ?? failure.message}` };
  }
}

/** Writes a rendered proxy in the container's layout: gen/1 behind `current`, pages, certificates. */
async function writeProxyTree(prefix: string, plan: PlatformPlan, observed: ProxyObserved, paths: ProxyPaths): Promise<void> {
  const rendered = renderProxyConfig(plan, observed, paths);
  const write = async (path: string, content: string) => {
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, content);
  };
  for (const [path, content] of Object.entries(rendered.config)) await write(join(prefix, "gen/1", path), content);
  for (const [path, content] of Object.entries(rendered.pages)) await write(join(paths.pages, path), content);
  await symlink("gen/1", join(prefix, "current"));
  await mkdir(join(paths.acmeWebroot, ".well-known/acme-challenge"), { recursive: true });
  await mkdir(dirname(paths.accessLog), { recursive: true });
  for (const environment of plan.environments) {
    if (observed.certificates[`${environment.app}/${environment.env}`]) await selfSignedCertificate(paths, environment);
  }
}

async function selfSignedCertificate(paths: ProxyPaths, environment: PlatformPlan["environments"][number]): Promise<void> {
  const files = certificateFiles(paths, environment);
  await mkdir(dirname(files.fullchain), { recursive: true });
  await run("openssl", [
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
    "-subj", `/CN=${environment.domains[0]}`,
    "-addext", `subjectAltName=${environment.domains.map((domain) => `DNS:${domain}`).join(",")}`,
    "-keyout", files.privkey, "-out", files.fullchain,
  ]);
}

/** What berth renders at its least usual: maintenance, HSTS, a '$' in a CSP, a regex with escapes. */
function unusualPlan(plan: PlatformPlan): PlatformPlan {
  const changed = structuredClone(plan);
  changed.environments.forEach((environment, index) => {
    environment.isInMaintenance = index % 2 === 1;
    environment.headers.hsts = { maxAgeSeconds: 63_072_000, includeSubdomains: true, preload: true };
    environment.headers.csp = "default-src 'self'; script-src 'self' 'nonce-$x'";
    const regex = environment.routes.find((route) => route.kind === "regex");
    if (regex) regex.path = "^/(api|ical)/v[0-9]+\\.ics$";
  });
  return changed;
}

describe("nginx -t accepts the rendered reference platform", async () => {
  const plan = await referencePlan();
  const cases: { name: string; plan: PlatformPlan; observed: ProxyObserved }[] = [
    { name: "nothing running yet, no certificates", plan, observed: { upstreams: {}, certificates: {} } },
    { name: "every replica running, every certificate issued", plan, observed: everythingObserved(plan) },
    { name: "maintenance, HSTS, '$' in a header, escaped regex", plan: unusualPlan(plan), observed: everythingObserved(plan) },
  ];
  const skip = !NGINX
    ? "no nginx binary in /usr/sbin or on PATH: install nginx (Debian: apt-get install nginx-light) to check the rendered config"
    : !HAS_LUA_MODULE
      ? "nginx's Lua module is missing (the rendered nginx.conf loads it): apt-get install libnginx-mod-http-lua"
      : false;

  for (const { name, plan, observed } of cases) {
    test(name, { skip }, async () => {
      const prefix = await mkdtemp(join(tmpdir(), "berth-nginx-t-"));
      try {
        const paths: ProxyPaths = {
          certs: join(prefix, "certs"),
          pages: join(prefix, "pages"),
          acmeWebroot: join(prefix, "acme"),
          accessLog: join(prefix, "logs/access.log"),
          errorLog: join(prefix, "logs/error.log"),
          pid: join(prefix, "nginx.pid"),
          live: join(prefix, "current"),
          generations: join(prefix, "gen"),
        };
        await writeProxyTree(prefix, plan, observed, paths);
        const result = await nginxCheck(prefix);
        assert.ok(result.ok, `nginx -t failed (it binds ports 80 and 443: run as root):\n${result.output}`);
      } finally {
        await rm(prefix, { recursive: true, force: true });
      }
    });
  }
});

// The hand-written configurations berth's proxy is benchmarked against (bench/proxy-lib.ts): a
// bench that no longer starts would only be found by running it.
describe("nginx -t accepts the benches' hand-written configurations", () => {
  const skip = NGINX ? false : "no nginx binary in /usr/sbin or on PATH: install nginx (Debian: apt-get install nginx-light)";
  const skipLua = skip || (HAS_LUA_MODULE ? false : "nginx's Lua module is missing: apt-get install libnginx-mod-http-lua");
  const configurations: Record<string, { render: (options: HandWrittenOptions) => string; skip: string | false }> = {
    minimal: { render: minimalNginxConf, skip },
    "required duties": { render: (options) => handWrittenNginxConf("required", options), skip },
    "required duties, least Lua routing": { render: (options) => handWrittenNginxConf("required+lua", options), skip: skipLua },
    "berth's features": { render: (options) => handWrittenNginxConf("berth", options), skip },
  };
  for (const [name, { render, skip }] of Object.entries(configurations)) {
    test(name, { skip }, async () => {
      const prefix = await mkdtemp(join(tmpdir(), "berth-nginx-t-"));
      try {
        const conf = join(prefix, "nginx.conf");
        await writeFile(conf, render({ listen: "80", backend: "127.0.0.1:9", pid: join(prefix, "nginx.pid"), accessLog: join(prefix, "access.log") }));
        const result = await nginxCheck(prefix, conf);
        assert.ok(result.ok, `nginx -t failed:\n${result.output}`);
      } finally {
        await rm(prefix, { recursive: true, force: true });
      }
    });
  }
});

// The benches' row of berth's own configuration cut to the required duties, its router kept.
// Its edits throw when the rendered text they cut no longer matches.
test("nginx -t accepts berth's configuration cut to the required duties", { skip: !NGINX || !HAS_LUA_MODULE ? "needs nginx and its Lua module (apt-get install nginx-light libnginx-mod-http-lua)" : false }, async () => {
  const prefix = await mkdtemp(join(tmpdir(), "berth-nginx-t-"));
  try {
    const paths = await writeBerthGeneration(prefix, { backend: "127.0.0.1:9", edits: requiredDutiesEdits(), target: "required duties with berth's router" });
    const nginxConf = await readFile(join(paths.live, "nginx.conf"), "utf8");
    assert.doesNotMatch(nginxConf, /proxy_set_header (X-Forwarded-Port|Upgrade)|"user_agent"/);
    assert.match(nginxConf, /"upstream_response_time"/);
    const result = await nginxCheck(prefix);
    assert.ok(result.ok, `nginx -t failed:\n${result.output}`);
  } finally {
    await rm(prefix, { recursive: true, force: true });
  }
});
