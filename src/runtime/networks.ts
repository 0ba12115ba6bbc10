// One bridge network per app environment (the unit of isolation), plus the platform's
// control network on which only PostgreSQL sits, for berth's own admin connection.
import { BerthError } from "../errors.js";
import { engine, type Docker } from "../host/docker.js";
import { names, platformLabels } from "../plan/names.js";
import type { PlatformPlan } from "../plan/types.js";
import type { Change } from "./apply.js";
import { managedFilter } from "./apply.js";

export function controlNetwork(platform: string): { name: string; labels: Record<string, string> } {
  return { name: names.controlNetwork(platform), labels: platformLabels(platform, "network") };
}

async function existingNetworks(docker: Docker, platform: string): Promise<Map<string, string>> {
  const networks = await engine("listing networks", () => docker.listNetworks({ filters: managedFilter(platform, "network") }));
  return new Map(networks.map((network) => [network.Name, network.Id]));
}

export async function ensureNetworks(docker: Docker, plan: PlatformPlan): Promise<Change[]> {
  const existing = await existingNetworks(docker, plan.platform);
  const wanted = [...plan.environments.map((env) => env.network), ...(plan.postgres.kind === "container" ? [controlNetwork(plan.platform)] : [])];
  const missing = wanted.filter((network) => !existing.has(network.name));
  // A name taken by something else stops the apply before any network is created.
  const foreign = await Promise.all(missing.map((network) => docker.getNetwork(network.name).inspect().then((info: { Labels?: Record<string, string> }) => info, () => undefined)));
  const taken = foreign.findIndex((info) => info !== undefined);
  if (taken >= 0) {
    const owner = foreign[taken]!.Labels?.["berth.platform"];
    throw new BerthError("CONFLICT", `a network named ${missing[taken]!.name} already exists and belongs to ${owner ? `platform ${owner}` : "something other than berth"}; nothing was changed`, "Rename the app, or remove that network.");
  }
  // Created side by side: the engine takes a few hundred milliseconds for each.
  await Promise.all(missing.map((network) =>
    engine(`creating network ${network.name}`, () => docker.createNetwork({ Name: network.name, Driver: "bridge", CheckDuplicate: true, Labels: network.labels })),
  ));
  return missing.map((network) => ({ kind: "created", target: `network ${network.name}` }));
}

/** Networks of environments no longer planned: disconnect platform containers, then remove. */
export async function removeNetworks(docker: Docker, plan: PlatformPlan): Promise<Change[]> {
  const wanted = new Set([...plan.environments.map((env) => env.network.name), controlNetwork(plan.platform).name]);
  const changes: Change[] = [];
  for (const [name, id] of await existingNetworks(docker, plan.platform)) {
    if (wanted.has(name)) continue;
    await removeNetwork(docker, id, name);
    changes.push({ kind: "removed", target: `network ${name}` });
  }
  return changes;
}

export async function removeNetwork(docker: Docker, id: string, name: string): Promise<void> {
  const network = docker.getNetwork(id);
  const info = (await engine(`inspecting network ${name}`, () => network.inspect())) as { Containers?: Record<string, unknown> };
  for (const container of Object.keys(info.Containers ?? {})) {
    await engine(`disconnecting ${container} from ${name}`, () => network.disconnect({ Container: container, Force: true }));
  }
  await engine(`removing network ${name}`, () => network.remove());
}

