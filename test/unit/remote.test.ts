// The remote CLI's configuration: flags > environment > config file, a token file others
// can read is refused, an unreachable berthd and berthd's problems become BerthErrors.
import assert from "node:assert/strict";
import { chmod, mkdir, mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, test } from "node:test";
import { call, problemError, remoteOf } from "../../src/cli/remote.js";
import { BerthError } from "../../src/errors.js";

const TOKEN = `berth_0123456789ab_${"x".repeat(43)}`;
const saved = { ...process.env };

describe("remote CLI configuration", () => {
  let home: string;
  let config: string;
  beforeEach(async () => {
    home = await mkdtemp(join(tmpdir(), "berth-config-"));
    await mkdir(join(home, "berth"));
    config = join(home, "berth", "config.yaml");
    process.env.XDG_CONFIG_HOME = home;
    delete process.env.BERTH_HOST;
    delete process.env.BERTH_TOKEN;
    delete process.env.BERTH_CA;
  });
  afterEach(() => {
    for (const key of ["XDG_CONFIG_HOME", "BERTH_HOST", "BERTH_TOKEN", "BERTH_CA"]) {
      if (saved[key] === undefined) delete process.env[key];
      else process.env[key] = saved[key];
    }
  });

  test("without a host anywhere, commands run locally", async () => {
    assert.equal(await remoteOf({}), undefined);
  });

  test("the config file gives host and token when it is private (0600)", async () => {
    await writeFile(config, `host: berth.example.org:8770\ntoken: ${TOKEN}\n`, { mode: 0o600 });
    const remote = await remoteOf({});
    assert.equal(remote?.url, "https://berth.example.org:8770");
    assert.equal(remote?.token, TOKEN);
  });

  test("a config file holding a token that others can read is refused", async () => {
    await writeFile(config, `host: h:1\ntoken: ${TOKEN}\n`);
    await chmod(config, 0o644);
    await assert.rejects(remoteOf({}), (error: BerthError) => error.code === "BAD_ARGUMENT" && /others can read it \(mode 644\)/.test(error.message) && /chmod 600/.test(error.hint ?? ""));
  });

  test("flags beat the environment, which beats the file", async () => {
    await writeFile(config, `host: from-file:1\ntoken: ${TOKEN}\n`, { mode: 0o600 });
    process.env.BERTH_HOST = "https://from-env:2";
    assert.equal((await remoteOf({}))?.url, "https://from-env:2");
    assert.equal((await remoteOf({ host: "https://from-flag:3/" }))?.url, "https://from-flag:3");
    process.env.BERTH_TOKEN = "berth_env";
    assert.equal((await remoteOf({}))?.token, "berth_env");
  });

  test("a host without a token is an error that says where a token goes", async () => {
    process.env.BERTH_HOST = "h:1";
    await assert.rejects(remoteOf({}), (error: BerthError) => error.code === "BAD_ARGUMENT" && /no token for h:1/.test(error.message) && /BERTH_TOKEN/.test(error.hint ?? ""));
  });

  test("an unreadable CA file is named", async () => {
    Object.assign(process.env, { BERTH_HOST: "h:1", BERTH_TOKEN: TOKEN, BERTH_CA: join(home, "missing.pem") });
    await assert.rejects(remoteOf({}), (error: BerthError) => /cannot read the CA file .*missing\.pem/.test(error.message));
  });

  test("an unreachable berthd is DAEMON_UNAVAILABLE (exit 69)", async () => {
    Object.assign(process.env, { BERTH_HOST: "https://127.0.0.1:1", BERTH_TOKEN: TOKEN });
    const remote = (await remoteOf({}))!;
    await assert.rejects(call(remote, "GET", "/v1/status"), (error: BerthError) => error.code === "DAEMON_UNAVAILABLE" && /ECONNREFUSED/.test(error.message));
    await remote.agent.close();
  });

  test("problems become errors with the same meaning, listing each field", () => {
    const error = problemError({ status: 403, detail: "token \"ci\" (app a) may not act on b/production" });
    assert.equal(error.code, "FORBIDDEN");
    const invalid = problemError({ status: 400, detail: "the body does not match the API contract", errors: [{ path: "body.ref", message: "must match pattern" }] });
    assert.equal(invalid.code, "BAD_ARGUMENT");
    assert.match(invalid.message, /\n {2}body\.ref: must match pattern/);
    assert.equal(problemError({ status: 409, detail: "busy" }).code, "CONFLICT");
  });
});
