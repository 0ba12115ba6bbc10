// The reachability matrix: every tenant container against every other, the proxy, PostgreSQL
// and the host's gateway addresses, asserting exactly the allowed paths. Each source first
// proves it can reach itself (a positive control), so a refusal means something.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { execIn, inspectContainer } from "../../src/host/docker.js";
import { cleanupByLabel, docker, restartEngine } from "./helpers.js";
import { apiYaml, HTTP_PORT, HTTPS_PORT, platformYaml, siteYaml, testPlatform, type TestPlatform } from "./platform.js";

const client = docker();
const NAME = "bti";

interface Endpoint {
  /** What the probe reaches: "name:port" or "ip:port". */
  address: string;
  /** Whether the platform's isolation allows it. */
  isAllowed: boolean;
  what: string;
}

interface Source {
  container: string;
  network: string;
  ownAddress: string;
  targets: Endpoint[];
}

/** One exec per source: bash's /dev/tcp tries each address with a 1 s bound. */
async function probe(container: string, addresses: string[], timeoutSeconds = 1): Promise<Map<string, boolean>> {
  const script = `for t in "$@"; do if timeout ${timeoutSeconds} bash -c "</dev/tcp/\${t%:*}/\${t##*:}" 2>/dev/null; then echo "$t yes"; else echo "$t no"; fi; done`;
  const { output } = await execIn(client, container, ["bash", "-c", script, "probe", ...addresses]);
  const results = new Map<string, boolean>();
  for (const line of output.trim().split("\n")) {
    const [address, verdict] = line.split(" ");
    results.set(address!, verdict === "yes");
  }
  return results;
}

async function buildMatrix(platform: TestPlatform): Promise<Source[]> {
  const tenants: { container: string; network: string; port: number; ip: string; hasDatabase: boolean }[] = [];
  for (const env of platform.plan.environments) {
    for (const component of env.components) {
      for (const container of component.containers) {
        const info = await inspectContainer(client, container.name);
        const ip = info?.NetworkSettings.Networks[env.network.name]?.IPAddress;
        assert.ok(ip, `${container.name} runs on ${env.network.name}`);
        tenants.push({ container: container.name, network: env.network.name, port: container.port, ip, hasDatabase: container.hasDatabase });
      }
    }
  }
  const proxy = await inspectContainer(client, `berth-${NAME}-proxy`);
  const postgres = await inspectContainer(client, `berth-${NAME}-postgres`);
  const gateways = new Set<string>();
  for (const env of platform.plan.environments) {
    const network = (await client.getNetwork(env.network.name).inspect()) as { IPAM: { Config: { Gateway: string }[] } };
    gateways.add(network.IPAM.Config[0]!.Gateway);
  }

  return tenants.map((source) => {
    const targets: Endpoint[] = [];
    for (const other of tenants) {
      if (other.container === source.container) continue;
      const isSameNetwork = other.network === source.network;
      targets.push({ address: `${other.ip}:${other.port}`, isAllowed: isSameNetwork, what: `tenant ${other.container} by IP` });
      targets.push({ address: `${other.container}:${other.port}`, isAllowed: isSameNetwork, what: `tenant ${other.container} by name` });
    }
    for (const [network, endpoint] of Object.entries(proxy!.NetworkSettings.Networks)) {
      targets.push({ address: `${endpoint.IPAddress}:80`, isAllowed: network === source.network, what: `proxy on ${network}` });
    }
    for (const [network, endpoint] of Object.entries(postgres!.NetworkSettings.Networks)) {
      targets.push({ address: `${endpoint.IPAddress}:5432`, isAllowed: network === source.network && source.hasDatabase, what: `PostgreSQL on ${network}` });
    }
    for (const gateway of gateways) {
      targets.push({ address: `${gateway}:${HTTP_PORT}`, isAllowed: false, what: `host gateway ${gateway} (proxy HTTP port)` });
      targets.push({ address: `${gateway}:${HTTPS_PORT}`, isAllowed: false, what: `host gateway ${gateway} (proxy HTTPS port)` });
    }
    return { container: source.container, network: source.network, ownAddress: `${source.ip}:${source.port}`, targets };
  });
}

async function assertMatrix(platform: TestPlatform): Promise<number> {
  const sources = await buildMatrix(platform);
  const verdicts = await Promise.all(sources.map((source) => probe(source.container, [source.ownAddress, ...source.targets.map((t) => t.address)])));
  // A path that should answer but did not within 1 s is asked again with 5 s: on a loaded host
  // the probe's own process start can take the whole second. A connection that was made is
  // never asked again, so a forbidden path that answered once still fails the matrix.
  await Promise.all(
    sources.map(async (source, index) => {
      const results = verdicts[index]!;
      const again = [source.ownAddress, ...source.targets.filter((t) => t.isAllowed).map((t) => t.address)].filter((address) => results.get(address) !== true);
      if (again.length === 0) return;
      for (const [address, verdict] of await probe(source.container, again, 5)) results.set(address, verdict);
    }),
  );
  const wrong: string[] = [];
  let checked = 0;
  sources.forEach((source, index) => {
    const results = verdicts[index]!;
    assert.equal(results.get(source.ownAddress), true, `positive control: ${source.container} reaches itself at ${source.ownAddress}`);
    for (const target of source.targets) {
      checked++;
      if (results.get(target.address) !== target.isAllowed) {
        wrong.push(`${source.container} → ${target.what} (${target.address}): expected ${target.isAllowed ? "reachable" : "unreachable"}`);
      }
    }
  });
  assert.deepEqual(wrong, [], `isolation matrix:\n${wrong.join("\n")}`);
  return checked;
}

describe("isolation between tenants", { timeout: 900_000 }, () => {
  let platform: TestPlatform;

  before(async () => {
    await cleanupByLabel(client);
    platform = await testPlatform(client, {
      "platform.yaml": platformYaml(NAME),
      "apps/bti-site.yaml": siteYaml("bti-site", { replicas: 2 }),
      "apps/bti-api.yaml": apiYaml("bti-api"),
    });
    await platform.apply();
  });
  after(async () => {
    await platform?.down({ purge: true }).catch(() => undefined);
    await cleanupByLabel(client);
  });

  test("every tenant reaches only its own environment, the proxy and its own database", async () => {
    const checked = await assertMatrix(platform);
    assert.ok(checked >= 100, `the matrix has ${checked} paths`);
  });

  test("a tenant cannot reach the platform's control network", async () => {
    const postgres = await inspectContainer(client, `berth-${NAME}-postgres`);
    const control = postgres!.NetworkSettings.Networks[`berth-${NAME}-control`]!.IPAddress;
    const results = await probe("bti-api-backend-production", [`berth-${NAME}-postgres:5432`, `${control}:5432`]);
    assert.equal(results.get(`berth-${NAME}-postgres:5432`), true, "positive control: its own network's PostgreSQL by name");
    assert.equal(results.get(`${control}:5432`), false);
  });

  test("the matrix holds again after the Docker engine restarts", { skip: process.env.CI !== "true" && process.env.BERTH_TEST_ENGINE_RESTART !== "1" ? "restarts the shared engine: runs in CI or with BERTH_TEST_ENGINE_RESTART=1" : false }, async () => {
    await restartEngine();
    // Containers come back by their restart policy; apply re-reads their addresses.
    await platform.apply();
    await assertMatrix(platform);
  });
});
