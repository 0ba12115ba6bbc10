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
  return (await createNetworks(docker, plan)).all;
}

/**
 * Creates the missing networks once none of their names is taken by something else (checked
 * before any is created). The engine creates networks one after another, a few hundred
 * milliseconds each, so the control network goes first: `control` settles when it exists
 * (PostgreSQL can start then), `all` when every network does.
 */
export async function createNetworks(docker: Docker, plan: PlatformPlan): Promise<{ control: Promise<void>; all: Promise<Change[]> }> {
  const existing = await existingNetworks(docker, plan.platform);
  const control = plan.postgres.kind === "container" ? controlNetwork(plan.platform) : undefined;
  const wanted = [...(control ? [control] : []), ...plan.environments.map((env) => env.network)];
  const missing = wanted.filter((network) => !existing.has(network.name));
  // A name taken by something else stops the apply before any network is created.
  const foreign = await Promise.all(missing.map((network) => docker.getNetwork(network.name).inspect().then((info: { Labels?: Record<string, string> }) => info, () => undefined)));
  const taken = foreign.findIndex((info) => info !== undefined);
  if (taken >= 0) {
    const owner = foreign[taken]!.Labels?.["berth.platform"];
    throw new BerthError("CONFLICT", `a network named ${missing[taken]!.name} already exists and belongs to ${owner ? `platform ${owner}` : "something other than berth"}; nothing was changed`, "Rename the app, or remove that network.");
  }
  const create = (network: { name: string; labels: Record<string, string> }) =>
    engine(`creating network ${network.name}`, () => docker.createNetwork({ Name: network.name, Driver: "bridge", CheckDuplicate: true, Labels: network.labels }));
  const first = control && missing.includes(control) ? create(control) : Promise.resolve();
  // The others side by side once the control network is asked for.
  const all = first.then(() => Promise.all(missing.filter((network) => network !== control).map(create))).then(() => missing.map((network): Change => ({ kind: "created", target: `network ${network.name}` })));
  all.catch(() => undefined); // awaited by the caller; a failure of `first` is reported through `control`
  return { control: first.then(() => undefined), all };
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

