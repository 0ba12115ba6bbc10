// The real CLI as a user runs it: a child process, its exit code, stdout and stderr.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, readdir, rm, writeFile, mkdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { PlatformPlan } from "../../src/plan/types.js";

const REPO = fileURLToPath(new URL("../..", import.meta.url));

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `berth ARGS` from the repository root, as `node --import tsx src/cli/main.ts ARGS`. */
function berth(...args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, ["--import", "tsx", "src/cli/main.ts", ...args], { cwd: REPO, timeout: 60_000 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === "number" ? error.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/** Every file under `dir`, relative, sorted: to show that a command wrote nothing. */
async function listing(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true });
  return entries.map(String).sort();
}

describe("berth CLI", { concurrency: true }, () => {
  test("validate on the reference platform exits 0 with a one-line summary", async () => {
    const run = await berth("validate", "examples/reference-platform");
    assert.deepEqual(run, { code: 0, stdout: "valid: platform reference, 3 apps, 6 environments\n", stderr: "" });
  });

  test("validate on an invalid spec exits 65, prints every problem to stderr, and writes nothing", async () => {
    const dir = await mkdtemp(join(tmpdir(), "berth-cli-"));
    try {
      await mkdir(join(dir, "apps"));
      await writeFile(join(dir, "platform.yaml"), "name: test\nproxy: { httpPort: 80, httpsPort: 80 }\n");
      await writeFile(
        join(dir, "apps", "a.yaml"),
        "name: a\ncomponents:\n  web: { image: nginx, prot: 80 }\nroutes:\n  - { path: /, to: web }\nenvironments:\n  prod: { domains: [a.localhost] }\n",
      );
      await writeFile(
        join(dir, "apps", "b.yaml"),
        "name: b\ncomponents:\n  web: { image: nginx, port: 80 }\nroutes:\n  - { path: /, to: wbe }\nenvironments:\n  prod: { domains: [b.localhost] }\n",
      );
      const before = await listing(dir);
      for (const command of ["validate", "plan"]) {
        const run = await berth(command, dir);
        assert.deepEqual(run, {
          code: 65,
          stdout: "",
          stderr: [
            "error: 3 problems in the spec:",
            `apps/a.yaml:3:24 components.web.prot: unknown field; did you mean "port"?`,
            `apps/b.yaml:5:20 routes[0].to: no component "wbe" in this app; did you mean "web"?`,
            "platform.yaml:2:35 proxy.httpsPort: expected a port other than httpPort, got 80",
            "Fix them and run berth validate again.",
            "",
          ].join("\n"),
        });
      }
      assert.deepEqual(await listing(dir), before);
      assert.deepEqual(before, ["apps", "apps/a.yaml", "apps/b.yaml", "platform.yaml"]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("validate on a directory that does not exist exits 66 and says what to pass", async () => {
    const run = await berth("validate", "no/such/dir");
    assert.deepEqual(run, { code: 66, stdout: "", stderr: "error: no/such/dir: no such file or directory\nPass the directory that holds platform.yaml.\n" });
  });

  test("plan --json prints the plan as JSON with the 6 environments", async () => {
    const run = await berth("plan", "examples/reference-platform", "--json");
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stderr, "");
    const plan = JSON.parse(run.stdout) as PlatformPlan;
    assert.equal(plan.platform, "reference");
    assert.deepEqual(
      plan.environments.map((e) => `${e.app}/${e.env}`),
      ["filter-ical/production", "filter-ical/staging", "gabs-massage/production", "gabs-massage/staging", "paiss/production", "paiss/staging"],
    );
  });

  test("plan prints the text plan", async () => {
    const run = await berth("plan", "examples/reference-platform");
    assert.equal(run.code, 0, run.stderr);
    assert.deepEqual(run.stdout.split("\n").slice(0, 3), [
      "platform reference: 6 environments",
      "  proxy     berth-reference-proxy  berth-nginx:1.22  http 127.0.0.1:8080  https 127.0.0.1:8443  networks 6",
      "  postgres  berth-reference-postgres  berth-postgres:15  volume berth-reference-postgres-data  networks 4",
    ]);
  });

  test("a misspelt command exits 64 and suggests the right one", async () => {
    const run = await berth("valdate", "examples/reference-platform");
    assert.equal(run.code, 64);
    assert.equal(run.stdout, "");
    assert.equal(run.stderr, "error: unknown command 'valdate'\n(Did you mean validate?)\n");
  });
});
