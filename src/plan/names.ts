// Naming and labelling of everything berth creates. One place, so cleanup by label and
// lookups by name agree with what apply created, and the spec's collision checks
// (src/spec/cross.ts) check the very names apply will use.
import type { Labels } from "./types.js";

export const LABEL = {
  managed: "berth.managed",
  platform: "berth.platform",
  role: "berth.role",
  app: "berth.app",
  env: "berth.env",
  component: "berth.component",
  replica: "berth.replica",
  configHash: "berth.config-hash",
} as const;

export type Role = "proxy" | "postgres" | "control" | "tenant" | "network" | "volume" | "release";

export function platformLabels(platform: string, role: Role): Labels {
  return { [LABEL.managed]: "true", [LABEL.platform]: platform, [LABEL.role]: role };
}

export function environmentLabels(platform: string, role: Role, app: string, env: string): Labels {
  return { ...platformLabels(platform, role), [LABEL.app]: app, [LABEL.env]: env };
}

/** PostgreSQL identifiers cannot hold '-': "filter-ical"/"production" → filter_ical_production. */
const databaseName = (app: string, env: string): string => `${app}_${env}`.replaceAll("-", "_");

/** A component's containers: one bare name, or one per replica with -1, -2, … */
function containerNames(app: string, component: string, env: string, replicas: number): string[] {
  const base = `${app}-${component}-${env}`;
  return replicas === 1 ? [base] : Array.from({ length: replicas }, (_, index) => `${base}-${index + 1}`);
}

export const names = {
  proxyContainer: (platform: string) => `berth-${platform}-proxy`,
  postgresContainer: (platform: string) => `berth-${platform}-postgres`,
  controlContainer: (platform: string) => `berth-${platform}-berthd`,
  postgresVolume: (platform: string) => `berth-${platform}-postgres-data`,
  proxyVolume: (platform: string, purpose: string) => `berth-${platform}-proxy-${purpose}`,
  network: (app: string, env: string) => `berth-${app}-${env}`,
  controlNetwork: (platform: string) => `berth-${platform}-control`,
  container: (app: string, component: string, env: string, replica: number, replicas: number) =>
    containerNames(app, component, env, replicas)[replica - 1]!,
  containers: containerNames,
  upstream: (app: string, env: string, component: string) => `${app}-${component}-${env}`.replaceAll("-", "_"),
  database: databaseName,
  role: databaseName,
};
