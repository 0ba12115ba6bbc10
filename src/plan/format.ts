// Human-readable rendering of a plan for `berth plan`. Pure.
import { relative } from "node:path";
import { formatDuration, formatMemory } from "../spec/units.js";
import type { ContainerPlan, ImageSource, PlatformPlan } from "./types.js";

function describeImage(image: ImageSource, root: string): string {
  if (image.kind === "image") return image.ref;
  const where = image.source.kind === "dir" ? relative(root, image.source.dir) || "." : `${image.source.url}#${image.source.ref}`;
  return `build ${where}/${image.context}`;
}

function describeContainer(container: ContainerPlan, root: string): string {
  const { resources, health } = container;
  return [
    `container ${container.name}`,
    describeImage(container.image, root),
    `port ${container.port}`,
    `cpus ${resources.cpus} memory ${formatMemory(resources.memoryBytes)} pids ${resources.pids}`,
    `health ${health.path} every ${formatDuration(health.intervalMs)}`,
    ...(container.hasDatabase ? ["DATABASE_URL"] : []),
  ].join("  ");
}

export function formatPlan(plan: PlatformPlan, root: string): string {
  const lines: string[] = [];
  const { proxy, postgres } = plan;
  const count = plan.environments.length;
  lines.push(`platform ${plan.platform}: ${count} environment${count === 1 ? "" : "s"}`);
  lines.push(`  proxy     ${proxy.container}  ${proxy.image}  http ${proxy.bind}:${proxy.httpPort}  https ${proxy.bind}:${proxy.httpsPort}  networks ${proxy.networks.length}`);
  lines.push(
    postgres.kind === "container"
      ? `  postgres  ${postgres.container}  ${postgres.image}  volume ${postgres.volume}  networks ${postgres.networks.length}`
      : `  postgres  external server`,
  );
  for (const env of plan.environments) {
    lines.push("");
    lines.push(`${env.app}/${env.env}${env.isInMaintenance ? "  (maintenance)" : ""}`);
    lines.push(`  network   ${env.network.name}`);
    lines.push(`  domains   ${env.domains.join(", ")}  tls ${env.tls.mode}`);
    if (env.database) {
      const db = env.database;
      lines.push(`  database  ${db.name}  role ${db.role}  connections ${db.connectionLimit}  statement timeout ${formatDuration(db.statementTimeoutMs)}`);
    }
    for (const component of env.components) {
      for (const container of component.containers) lines.push(`  ${describeContainer(container, root)}`);
      if (component.release) lines.push(`  release   ${component.name}: ${component.release.join(" ")}`);
    }
    for (const route of env.routes) {
      lines.push(`  route     ${route.path} → ${route.component}:${route.port}  limit ${route.limit.name} (${route.limit.rate} r/s, burst ${route.limit.burst})`);
    }
  }
  return lines.join("\n") + "\n";
}
