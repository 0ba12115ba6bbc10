// deploy/berthd.service, the unit shipped for running berthd under systemd: systemd accepts it,
// and every directory berthd writes exists when it starts, also right after a boot (when /run is
// an empty tmpfs): with ProtectSystem=strict a writable path that does not exist fails the start.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { describe, test } from "node:test";
import { promisify } from "node:util";

const UNIT = resolve(import.meta.dirname, "../../deploy/berthd.service");
const BERTHD = resolve(import.meta.dirname, "../../bin/berthd");
const SYSTEMD_ANALYZE = "/usr/bin/systemd-analyze";

/** Every value of a [Service] setting, split on spaces (the unit quotes none of its paths). */
function settings(text: string, key: string): string[] {
  return text
    .split("\n")
    .filter((line) => line.startsWith(`${key}=`))
    .flatMap((line) => line.slice(key.length + 1).trim().split(/\s+/))
    .filter(Boolean);
}

/** The directories systemd creates for the service before starting it. */
function createdBySystemd(text: string): string[] {
  const roots: [string, string][] = [
    ["StateDirectory", "/var/lib"],
    ["RuntimeDirectory", "/run"],
    ["ConfigurationDirectory", "/etc"],
    ["CacheDirectory", "/var/cache"],
    ["LogsDirectory", "/var/log"],
  ];
  return roots.flatMap(([key, root]) => settings(text, key).map((name) => `${root}/${name}`));
}

describe("deploy/berthd.service", () => {
  test("the directories berthd writes (state, spec and key, secret files) are created by systemd", async () => {
    const text = await readFile(UNIT, "utf8");
    assert.match(text, /^ProtectSystem=strict$/m, "the rest of the system stays read-only");
    const created = createdBySystemd(text);
    for (const dir of ["/var/lib/berth", "/etc/berth", "/run/berth"]) assert.ok(created.includes(dir), `${dir} is created by the unit`);
    // A ReadWritePaths entry without "-" must exist at start, which nothing guarantees unless systemd creates it.
    for (const path of settings(text, "ReadWritePaths").filter((entry) => !entry.startsWith("-"))) {
      assert.ok(created.some((dir) => path === dir || path.startsWith(`${dir}/`)), `ReadWritePaths ${path} may not exist at start`);
    }
    assert.match(text, /^RuntimeDirectoryPreserve=yes$/m, "/run/berth outlives berthd: running tenants mount secret files from it");
  });

  test("systemd-analyze verify accepts it", { skip: !existsSync(SYSTEMD_ANALYZE) && "systemd-analyze is not installed" }, async () => {
    // The unit names the installed path (/opt/berth); verify checks that ExecStart is executable, so point it at this checkout.
    const text = (await readFile(UNIT, "utf8")).replace("ExecStart=/opt/berth/bin/berthd", `ExecStart=${BERTHD}`);
    assert.ok(text.includes(`ExecStart=${BERTHD}`));
    const copy = join(await mkdtemp(join(tmpdir(), "berth-unit-")), "berthd.service");
    await writeFile(copy, text);
    const { stdout, stderr } = await promisify(execFile)(SYSTEMD_ANALYZE, ["verify", copy]);
    assert.equal(`${stdout}${stderr}`.trim(), "", "no warning");
  });
});
