// Safe proxy changes on a real filesystem with the real nginx: a rejected configuration
// leaves the live generation untouched and shows nginx's own words.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, readFile, readlink, readdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";
import { BerthError } from "../../src/errors.js";
import { PROXY_MOUNT, proxyDir, stageProxyConfig, type ProxyValidator } from "../../src/proxy/apply.js";

const run = promisify(execFile);
const NGINX = "/usr/sbin/nginx";

/** Runs the host's nginx -t on a generation, mapping the container path to the temp dir. */
function hostValidator(root: string): ProxyValidator {
  return async (generation) => {
    const conf = join(proxyDir(root).root, generation.slice(PROXY_MOUNT.length), "nginx.conf");
    try {
      const { stderr } = await run(NGINX, ["-t", "-q", "-p", root, "-c", conf]);
      return { ok: true, output: stderr };
    } catch (error) {
      return { ok: false, output: String((error as { stderr?: string }).stderr) };
    }
  };
}

const config = (body: string) => ({
  config: { "nginx.conf": `pid nginx.pid;\nerror_log stderr;\nevents {}\nhttp {\n  access_log off;\n  include sites/*.conf;\n}\n`, "sites/a.conf": body },
  pages: { "unavailable.html": "<p>unavailable</p>\n" },
});

test("a valid config becomes the live generation; an identical one changes nothing", async () => {
  const root = await mkdtemp(join(tmpdir(), "berth-proxy-"));
  const dir = proxyDir(root);
  const first = await stageProxyConfig(dir, config("server { listen 127.0.0.1:1; return 204; }\n"), hostValidator(root));
  assert.deepEqual(first, { changed: true, generation: 1 });
  assert.equal(await readlink(dir.current), "gen/1");
  assert.equal(await readFile(join(dir.pages, "unavailable.html"), "utf8"), "<p>unavailable</p>\n");
  const again = await stageProxyConfig(dir, config("server { listen 127.0.0.1:1; return 204; }\n"), hostValidator(root));
  assert.deepEqual(again, { changed: false, generation: 1 });
});

test("a config nginx rejects is removed and the live one stays, with nginx's message", async () => {
  const root = await mkdtemp(join(tmpdir(), "berth-proxy-"));
  const dir = proxyDir(root);
  await stageProxyConfig(dir, config("server { listen 127.0.0.1:1; return 204; }\n"), hostValidator(root));
  await assert.rejects(stageProxyConfig(dir, config("server { listen 127.0.0.1:1; retrun 204; }\n"), hostValidator(root)), (error: unknown) => {
    assert.ok(error instanceof BerthError);
    assert.equal(error.code, "PROXY_CONFIG_REJECTED");
    assert.match(error.message, /the running one is unchanged/);
    assert.match(error.message, /unknown directive "retrun"/);
    return true;
  });
  assert.equal(await readlink(dir.current), "gen/1", "the live generation is untouched");
  assert.deepEqual((await readdir(dir.gen)).sort(), ["1"], "the rejected generation is gone");
});
