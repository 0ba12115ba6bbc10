// Canaries: secrets whose values are unique strings are set through the CLI — the commands
// registered with openPlatform as main.ts will, run in-process with their own streams, and
// as a real child process — then every byte berth wrote (the state directory, the key file,
// each command's stdout and stderr) is searched for them, in plain text and in the
// encodings a careless write would use.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Readable } from "node:stream";
import { Command, CommanderError } from "commander";
import { openPlatform } from "../../src/cli/deploy.js";
import { registerSecretsCommands, type OpenPlatform } from "../../src/cli/secrets.js";
import { BerthError, ERROR_CODES } from "../../src/errors.js";
import { SecretStore } from "../../src/secrets/store.js";
import { assertNoCanary as assertNoCanaryIn, filesUnder } from "../canary.js";

// main.ts registers the commands with openPlatform itself: it must fit the open function's type.
const open: OpenPlatform = openPlatform;

const REPO = fileURLToPath(new URL("../..", import.meta.url));

/** The secrets commands as main.ts will wire them, with main.ts's error output and exit codes. */
const ENTRY = `
import { Command, CommanderError } from "commander";
const { registerSecretsCommands } = await import("./src/cli/secrets.ts");
const { openPlatform } = await import("./src/cli/deploy.ts");
const { BerthError, ERROR_CODES } = await import("./src/errors.ts");
const cli = new Command("berth").exitOverride();
registerSecretsCommands(cli, openPlatform);
try {
  await cli.parseAsync(process.argv.slice(1), { from: "user" });
} catch (error) {
  if (error instanceof CommanderError) process.exitCode = error.exitCode === 0 ? 0 : ERROR_CODES.BAD_ARGUMENT.exit;
  else if (error instanceof BerthError) {
    process.stderr.write("error: " + error.message + "\\n" + (error.hint ? error.hint + "\\n" : ""));
    process.exitCode = ERROR_CODES[error.code].exit;
  } else {
    process.stderr.write("internal error: " + (error.stack ?? String(error)) + "\\n");
    process.exitCode = ERROR_CODES.INTERNAL.exit;
  }
}
`;

interface Run {
  args: string[];
  code: number;
  stdout: string;
  stderr: string;
}

let dir: string;
let spec: string;
let stateDir: string;
let keyPath: string;
const runs: Run[] = [];
const canaries: string[] = [];

function canary(label: string): string {
  const value = `canary-${label}-${randomUUID()}`;
  canaries.push(value);
  return value;
}

function argv(args: string[]): string[] {
  return ["secrets", ...args, "--spec", spec, "--state-dir", stateDir, "--secrets-key", keyPath];
}

/**
 * Runs `berth secrets ARGS` in-process with the temp spec, state and key file, `stdin` as
 * its piped input; errors are printed and mapped to exit codes as main.ts does.
 */
async function berth(args: string[], stdin: string | Buffer = ""): Promise<Run> {
  const run: Run = { args, code: 0, stdout: "", stderr: "" };
  const io = {
    stdin: Readable.from([Buffer.from(stdin)]),
    stdout: { write: (text: string) => (run.stdout += text) },
    stderr: { write: (text: string) => (run.stderr += text) },
  };
  const cli = new Command("berth").exitOverride().configureOutput({ writeOut: io.stdout.write, writeErr: io.stderr.write });
  registerSecretsCommands(cli, open, io);
  try {
    await cli.parseAsync(argv(args), { from: "user" });
  } catch (error) {
    if (error instanceof CommanderError) run.code = error.exitCode === 0 ? 0 : ERROR_CODES.BAD_ARGUMENT.exit;
    else if (error instanceof BerthError) {
      run.stderr += `error: ${error.message}\n${error.hint ? `${error.hint}\n` : ""}`;
      run.code = ERROR_CODES[error.code].exit;
    } else throw error;
  }
  runs.push(run);
  return run;
}

/** Runs `berth secrets ARGS` as a child process, its stdin piped from `stdin`. */
function berthProcess(args: string[], stdin = ""): Promise<Run> {
  return new Promise((resolve) => {
    const child = execFile(
      process.execPath,
      ["--import", "tsx", "--input-type=module", "-e", ENTRY, ...argv(args)],
      { cwd: REPO, timeout: 60_000, env: { ...process.env, NO_COLOR: "1" } },
      (error, stdout, stderr) => {
        const run = { args, code: error ? (typeof error.code === "number" ? error.code : -1) : 0, stdout, stderr };
        runs.push(run);
        resolve(run);
      },
    );
    child.stdin!.end(stdin);
  });
}

function assertNoCanary(where: string, bytes: Buffer): void {
  assertNoCanaryIn(canaries, where, bytes);
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "berth-canary-"));
  spec = join(dir, "spec");
  stateDir = join(dir, "state");
  keyPath = join(dir, "keys", "secrets.key");
  await mkdir(join(spec, "apps"), { recursive: true });
  await writeFile(join(spec, "platform.yaml"), "name: canary\nproxy: { httpPort: 18080, httpsPort: 18443 }\n");
  await writeFile(
    join(spec, "apps", "shop.yaml"),
    "name: shop\ncomponents:\n  web: { image: nginx, port: 80 }\nroutes:\n  - { path: /, to: web }\nenvironments:\n  production: { domains: [shop.localhost] }\n  staging: { domains: [staging.shop.localhost] }\n",
  );
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("secrets canaries", () => {
  const values: Record<string, string> = {};

  test("set from the command line and from stdin; set again; unset; list", async () => {
    values.API_KEY = canary("argv-1");
    values.TOKEN = canary("argv-2");
    let run = await berth(["set", "shop", "--env", "production", `API_KEY=${values.API_KEY}`, `TOKEN=${values.TOKEN}`]);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout, "shop/production: set API_KEY (v1), TOKEN (v1); secrets version 1\n");
    assert.equal(run.stderr, "Deploy to use them: berth deploy shop --env production\n");

    const piped = canary("stdin");
    values.STRIPE_KEY = `${piped}\nsecond line of ${piped}`;
    run = await berth(["set", "shop", "--env", "production", "STRIPE_KEY", "--json"], `${values.STRIPE_KEY}\n`);
    assert.equal(run.code, 0, run.stderr);
    const change = JSON.parse(run.stdout) as { app: string; env: string; version: number; changed: { name: string; version: number; isDeleted: boolean }[] };
    assert.deepEqual(
      [change.app, change.env, change.version, change.changed.map((c) => [c.name, c.version, c.isDeleted])],
      ["shop", "production", 2, [["STRIPE_KEY", 1, false]]],
    );

    // One trailing line break is dropped (the one echo adds); the rest of the value is kept.
    values.TRAILING = `${canary("trailing")}\r\n\n`;
    run = await berth(["set", "shop", "--env", "production", "TRAILING"], `${values.TRAILING}\r\n`);
    assert.equal(run.code, 0, run.stderr);

    const replaced = canary("replaced");
    run = await berth(["set", "shop", "--env", "production", `API_KEY=${replaced}`]);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout, "shop/production: set API_KEY (v2); secrets version 4\n");
    values.API_KEY = replaced;

    const removed = canary("unset");
    run = await berth(["set", "shop", "--env", "staging", `GONE=${removed}`, `KEPT=${canary("staging")}`]);
    assert.equal(run.code, 0, run.stderr);
    run = await berth(["unset", "shop", "--env", "staging", "GONE"]);
    assert.deepEqual([run.code, run.stdout], [0, "shop/staging: unset GONE (v2); secrets version 2\n"]);

    run = await berth(["list", "shop", "--env", "production"]);
    assert.equal(run.code, 0, run.stderr);
    const lines = run.stdout.trimEnd().split("\n");
    assert.equal(lines[0], "NAME        VERSION  UPDATED");
    assert.deepEqual(
      lines.slice(1).map((line) => line.split(/\s+/).slice(0, 2)),
      [
        ["API_KEY", "v2"],
        ["STRIPE_KEY", "v1"],
        ["TOKEN", "v1"],
        ["TRAILING", "v1"],
      ],
    );
    run = await berth(["list", "shop", "--env", "staging", "--json"]);
    const listed = JSON.parse(run.stdout) as { version: number; secrets: { name: string; version: number; updatedAt: string }[] };
    assert.equal(listed.version, 2);
    assert.deepEqual(
      listed.secrets.map((s) => Object.keys(s).sort()),
      [["name", "updatedAt", "version"]],
    );
    assert.equal(listed.secrets[0]!.name, "KEPT");
  });

  test("refused commands say why without echoing the value, and write nothing", async () => {
    const refused: [string[], string | Buffer, number, RegExp][] = [
      [["set", "shop", "--env", "nope", `A=${canary("bad-env")}`], "", 66, /no environment shop\/nope in the spec/],
      [["set", "blog", "--env", "production", `A=${canary("bad-app")}`], "", 66, /no environment blog\/production/],
      [["set", "shop", "--env", "production", `lower=${canary("bad-name")}`], "", 64, /argument 1: secret name "lower"/],
      [["set", "shop", "--env", "production", `DATABASE_URL=${canary("reserved")}`], "", 64, /DATABASE_URL is reserved/],
      [["set", "shop", "--env", "production", `BIG=${canary("big")}${"x".repeat(65 * 1024)}`], "", 64, /secret BIG: the value is \d+ bytes; the limit is 65536/],
      [["set", "shop", "--env", "production", "BIG"], `${canary("big-stdin")}${"x".repeat(70 * 1024)}`, 64, /secret BIG: the value on stdin is over 65536 bytes/],
      [["set", "shop", "--env", "production", "A", "B"], canary("two-bare"), 64, /both A and B have no =VALUE/],
      [["set", "shop", "--env", "production", "EMPTY"], "", 64, /secret EMPTY: no value on stdin/],
      [["set", "shop", "--env", "production", "BINARY"], Buffer.concat([Buffer.from(canary("binary")), Buffer.from([0xff, 0xfe])]), 64, /secret BINARY: the value on stdin is not UTF-8 text/],
      [["set", "shop", `A=${canary("no-env")}`], "", 64, /secrets set needs --env ENV/],
      [["unset", "shop", "--env", "production", "NOPE"], "", 66, /shop\/production has no secret NOPE/],
    ];
    const before = await berth(["list", "shop", "--env", "production", "--json"]);
    for (const [args, stdin, code, pattern] of refused) {
      const run = await berth(args, stdin);
      assert.equal(run.code, code, `${args.join(" ")}: ${run.stderr}`);
      assert.equal(run.stdout, "");
      assert.match(run.stderr, pattern);
    }
    assert.equal((await berth(["list", "shop", "--env", "production", "--json"])).stdout, before.stdout);
  });

  test("as a real process: set from stdin, a refused set, list", async () => {
    values.FROM_PROCESS = canary("process-stdin");
    const [set, refused] = await Promise.all([
      berthProcess(["set", "shop", "--env", "production", "FROM_PROCESS"], `${values.FROM_PROCESS}\n`),
      berthProcess(["set", "shop", "--env", "production", `bad-name=${canary("process-argv")}`]),
    ]);
    assert.deepEqual(set, {
      args: set.args,
      code: 0,
      stdout: "shop/production: set FROM_PROCESS (v1); secrets version 5\n",
      stderr: "Deploy to use them: berth deploy shop --env production\n",
    });
    assert.equal(refused.code, 64);
    assert.equal(refused.stdout, "");
    assert.match(refused.stderr, /^error: argument 1: secret name "bad-name": expected an environment variable name/);
    const list = await berthProcess(["list", "shop", "--env", "production"]);
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, /^FROM_PROCESS +v1 +\d{4}-/m);
  });

  test("rotate-key and retire-keys: every secret still decrypts to its value", async () => {
    let run = await berth(["rotate-key"]);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout, `key version 2 is current in ${keyPath}; re-wrapped 8 data keys\n`);
    assert.match(run.stderr, /Key versions 1 are no longer used/);
    run = await berth(["retire-keys", "--json"]);
    assert.deepEqual(JSON.parse(run.stdout), { keyFile: keyPath, retiredVersions: [1] });

    const store = new SecretStore(stateDir, { keyPath });
    try {
      assert.deepEqual(store.values("shop", "production"), values);
      assert.deepEqual(Object.keys(store.values("shop", "staging")), ["KEPT"]);
    } finally {
      store.close();
    }
  });

  test("no canary appears in the state directory, the key file, or any command's output", async () => {
    assert.ok(canaries.length >= 10);
    const files = [...(await filesUnder(stateDir)), ...(await filesUnder(join(dir, "keys")))];
    const names = files.map(([file]) => file.slice(dir.length + 1)).sort();
    assert.ok(names.includes("state/berth.db") && names.includes("keys/secrets.key"), names.join(", "));
    for (const [file, bytes] of files) assertNoCanary(file, bytes);
    assert.ok(runs.length >= 20);
    for (const run of runs) {
      assertNoCanary(`stdout of secrets ${run.args.slice(0, 4).join(" ")}`, Buffer.from(run.stdout));
      assertNoCanary(`stderr of secrets ${run.args.slice(0, 4).join(" ")}`, Buffer.from(run.stderr));
    }
    // The check itself finds a canary where there is one.
    assert.throws(() => assertNoCanary("self-test", Buffer.from(`x${canaries[0]}x`)));
    assert.throws(() => assertNoCanary("self-test", Buffer.from(Buffer.from(canaries[0]!).toString("base64"))));
  });
});
