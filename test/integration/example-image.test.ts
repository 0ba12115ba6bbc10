// Proves the engine works end to end: an example app is built through the Engine API and
// runs hardened, limited and healthy on a real Docker engine.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { waitHealthy } from "../../src/host/docker.js";
import { planPlatform } from "../../src/plan/plan.js";
import { tenantCreateOptions } from "../../src/runtime/containers.js";
import { ensureImage, imageTag, contextHash } from "../../src/runtime/images.js";
import { loadSpec } from "../../src/spec/index.js";
import { cleanupByLabel, docker, EXAMPLE_ROOT, TEST_LABEL } from "./helpers.js";
import { join } from "node:path";

const client = docker();
const NETWORK = "berth-test-example-image";

before(async () => {
  await cleanupByLabel(client);
});
after(async () => {
  await cleanupByLabel(client);
});

test("an example image builds through the Engine API and runs hardened and healthy", async () => {
  const { root, spec } = await loadSpec(EXAMPLE_ROOT);
  const plan = planPlatform(spec, { root });
  const env = plan.environments.find((e) => e.app === "paiss" && e.env === "staging")!;
  const web = env.components[0]!;
  assert.equal(web.image.kind, "build");

  const lines: string[] = [];
  const image = await ensureImage(client, web.image, (line) => lines.push(line));
  const source = web.image.kind === "build" && web.image.source.kind === "dir" ? join(web.image.source.dir, web.image.context) : "";
  assert.equal(image.ref, imageTag("paiss", "web", await contextHash(source, "Dockerfile")));
  const again = await ensureImage(client, web.image, () => undefined);
  assert.deepEqual(again, { ref: image.ref, built: false }, "an unchanged context is not rebuilt");

  await client.createNetwork({ Name: NETWORK, Labels: { [TEST_LABEL]: "true" } });
  const container = { ...web.containers[0]!, name: "berth-test-paiss-web", network: NETWORK, labels: { ...web.containers[0]!.labels, [TEST_LABEL]: "true" } };
  await client.createContainer(tenantCreateOptions(container, { image: image.ref, injectedEnv: {} }));
  await client.getContainer(container.name).start();
  const health = await waitHealthy(client, container.name, 30_000);
  assert.deepEqual(health, { ok: true });

  const info = await client.getContainer(container.name).inspect();
  assert.equal(info.HostConfig.Memory, 64 * 1024 * 1024);
  assert.equal(info.HostConfig.NanoCpus, 0.25e9);
  assert.equal(info.HostConfig.PidsLimit, 256);
  assert.deepEqual(info.HostConfig.CapDrop, ["ALL"]);
  assert.deepEqual(info.HostConfig.SecurityOpt, ["no-new-privileges:true"]);
  assert.equal(info.Config.User, "app", "the example image runs as its non-root user");

  const ip = info.NetworkSettings.Networks[NETWORK]!.IPAddress;
  const response = await fetch(`http://${ip}:8080/health.txt`, { signal: AbortSignal.timeout(5000) });
  assert.equal(response.status, 200);
  assert.equal((await response.text()).trim(), "ok");
});
