// berth down: stop the platform. Data stays (database volume, state) unless purged.
import { rm } from "node:fs/promises";
import { engine, pingEngine, type Docker } from "../host/docker.js";
import type { PlatformPlan } from "../plan/types.js";
import { managedFilter, removeContainer, type Change } from "./apply.js";
import { removeNetwork } from "./networks.js";

export async function downPlatform(docker: Docker, plan: PlatformPlan, stateDir: string, options: { purge: boolean }): Promise<Change[]> {
  await pingEngine(docker);
  const changes: Change[] = [];
  // berthd first (its reconcile loop would bring back what goes next), then tenants, the
  // proxy (it would only answer 502s), the database last.
  for (const role of ["control", "tenant", "proxy", "postgres"]) {
    const containers = await engine("listing containers", () => docker.listContainers({ all: true, filters: managedFilter(plan.platform, role) }));
    for (const container of containers) {
      const name = container.Names[0]!.replace(/^\//, "");
      await removeContainer(docker, name);
      changes.push({ kind: "removed", target: name });
    }
  }
  const networks = await engine("listing networks", () => docker.listNetworks({ filters: managedFilter(plan.platform, "network") }));
  for (const network of networks) {
    await removeNetwork(docker, network.Id, network.Name);
    changes.push({ kind: "removed", target: `network ${network.Name}` });
  }
  if (options.purge) {
    const volumes = await engine("listing volumes", () => docker.listVolumes({ filters: JSON.stringify({ label: [`berth.platform=${plan.platform}`] }) }));
    for (const volume of volumes.Volumes ?? []) {
      await engine(`removing volume ${volume.Name}`, () => docker.getVolume(volume.Name).remove());
      changes.push({ kind: "removed", target: `volume ${volume.Name}` });
    }
    await rm(stateDir, { recursive: true, force: true });
    changes.push({ kind: "removed", target: `state ${stateDir}` });
  }
  return changes;
}
