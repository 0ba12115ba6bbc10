// A tenant container that restarts with a new address keeps being served: the watcher renders
// the proxy again from Docker events, and the new address reaches nginx's workers as a new route
// table, without a reload.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { readFile } from "node:fs/promises";
import { inspectContainer } from "../../src/host/docker.js";
import { reloadProxy } from "../../src/proxy/apply.js";
import { watchPlatform } from "../../src/runtime/watch.js";
import type { Change } from "../../src/runtime/apply.js";
import { cleanupByLabel, docker, TEST_LABEL } from "./helpers.js";
import { httpsGet, platformYaml, siteYaml, testPlatform, type TestPlatform } from "./platform.js";

const client = docker();
const NAME = "btw";
const CONTAINER = "btw-site-web-production";
const NETWORK = "berth-btw-site-production";

async function proxyWorkers(): Promise<string[]> {
  const { State } = (await inspectContainer(client, `berth-${NAME}-proxy`))!;
  return (await readFile(`/proc/${State.Pid}/task/${State.Pid}/children`, "utf8")).split(" ").filter(Boolean).sort();
}

async function ipOf(name: string): Promise<string> {
  return (await inspectContainer(client, name))!.NetworkSettings.Networks[NETWORK]!.IPAddress;
}

describe("watching tenant containers", { timeout: 600_000 }, () => {
  let platform: TestPlatform;
  const stop = new AbortController();
  const refreshes: { changes: Change[]; trigger: string; at: number }[] = [];
  let watching: Promise<void> = Promise.resolve();

  before(async () => {
    await cleanupByLabel(client);
    platform = await testPlatform(client, { "platform.yaml": platformYaml(NAME), "apps/btw-site.yaml": siteYaml("btw-site", { staging: false }) });
    await platform.apply();
    watching = watchPlatform(client, platform.plan, platform.stateDir, stop.signal, (changes, trigger) => refreshes.push({ changes, trigger, at: Date.now() }), () => undefined);
  });
  after(async () => {
    stop.abort();
    await watching;
    await platform?.down({ purge: true }).catch(() => undefined);
    await cleanupByLabel(client);
  });

  test("a restart with a new IP is served again without an apply", async () => {
    assert.equal((await httpsGet("btw-site.test", "/health.txt")).status, 200);
    const before = await ipOf(CONTAINER);
    const workers = await proxyWorkers();
    await client.getContainer(CONTAINER).stop({ t: 2 });
    // Another container joins meanwhile; the engine allocates addresses serially, so the
    // restarted container does not get its old one back.
    await client.createContainer({
      name: "btw-squatter",
      Image: "berth-node:20",
      Cmd: ["sleep", "300"],
      Labels: { [TEST_LABEL]: "true" },
      HostConfig: { NetworkMode: NETWORK },
    });
    await client.getContainer("btw-squatter").start();
    const restarted = Date.now();
    await client.getContainer(CONTAINER).start();
    const after = await ipOf(CONTAINER);
    assert.notEqual(after, before, "the container came back on another address");

    let status = 0;
    for (const deadline = Date.now() + 60_000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 100))) {
      status = (await httpsGet("btw-site.test", "/health.txt").catch(() => ({ status: 0 }))).status;
      if (status === 200) break;
    }
    assert.equal(status, 200, "served again through nginx");
    // The watcher hears of its refresh once every worker routes by the new table, which can be a
    // moment after the first request a worker answered by it.
    const rendered = () => refreshes.filter((r) => r.changes.length > 0 && r.at >= restarted);
    for (const deadline = Date.now() + 10_000; rendered().length === 0 && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 50));
    assert.ok(rendered().length > 0, `the watcher re-rendered the proxy (refreshes: ${JSON.stringify(refreshes.map((r) => r.trigger))})`);
    assert.match(rendered()[0]!.changes.map((change) => change.detail ?? "").join("\n"), /route table, no reload/);
    assert.deepEqual(await proxyWorkers(), workers, "no reload: the same nginx workers serve");
    process.stderr.write(`restart with a new IP → served again in ${Date.now() - restarted} ms\n`);
  });

  test("a reload returns only once no old worker takes new connections", async () => {
    const proxy = (await inspectContainer(client, platform.plan.proxy.container))!;
    const master = { containerId: proxy.Id, pid: proxy.State.Pid };
    const workers = (await readFile(`/proc/${master.pid}/task/${master.pid}/children`, "utf8")).split(" ").filter(Boolean).map(Number);
    assert.ok(workers.length > 0, "nginx's master has workers");
    // A stopped worker cannot hear the master: it keeps its listening sockets, old configuration and all.
    const stalled = workers[0]!;
    process.kill(stalled, "SIGSTOP");
    let settled = false;
    const reload = reloadProxy(client, platform.plan.proxy.container, { master, timeoutMs: 20_000 }).finally(() => (settled = true));
    try {
      await new Promise((resolve) => setTimeout(resolve, 1500));
      assert.equal(settled, false, "the reload waited for the stalled old worker");
    } finally {
      process.kill(stalled, "SIGCONT");
    }
    await reload;
    // Gone, or exiting (a process that has exited and not yet been reaped reads an empty cmdline).
    const title = (await readFile(`/proc/${stalled}/cmdline`, "utf8").catch(() => "")).replace(/\0+/g, " ").trim() || "(exited)";
    assert.match(title, /shutting down|\(exited\)/, "the old worker stopped taking connections");
  });
});
