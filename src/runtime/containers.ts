// Tenant containers: the Docker create body for a planned container (pure), and the steps
// that converge running containers to the plan.
import { createHash } from "node:crypto";
import type Dockerode from "dockerode";
import { LABEL } from "../plan/names.js";
import type { ContainerPlan } from "../plan/types.js";
import { secretFilesMount, SECRETS_VERSION_VAR } from "../secrets/files.js";

const NANO = 1_000_000;

/** Bounded log files: a chatty tenant cannot fill the disk. */
export const TENANT_LOG_CONFIG = { Type: "json-file", Config: { "max-size": "10m", "max-file": "3" } };

export interface TenantRuntime {
  /** Image reference resolved by ensureImage. */
  image: string;
  /**
   * Variables berth injects (secrets, DATABASE_URL); never part of the spec. When the
   * component's secrets are files (runtime/apply.ts injectedEnv), they hold no value but
   * BERTH_SECRETS_VERSION, which names the host directory mounted at /run/secrets.
   */
  injectedEnv: Record<string, string>;
}

/**
 * The create body of a tenant container, hardened: no new privileges, every capability
 * dropped unless the spec keeps it, memory (without extra swap), CPU and pids limits always set.
 */
export function tenantCreateOptions(plan: ContainerPlan, runtime: TenantRuntime): Dockerode.ContainerCreateOptions {
  const env = { ...plan.envVars, ...runtime.injectedEnv };
  const options: Dockerode.ContainerCreateOptions = {
    name: plan.name,
    Image: runtime.image,
    Env: Object.entries(env)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([key, value]) => `${key}=${value}`),
    ExposedPorts: { [`${plan.port}/tcp`]: {} },
    Labels: plan.labels,
    Healthcheck: {
      Test: plan.health.test,
      Interval: plan.health.intervalMs * NANO,
      Timeout: plan.health.timeoutMs * NANO,
      Retries: plan.health.retries,
      StartPeriod: plan.health.startPeriodMs * NANO,
    },
    StopTimeout: 10,
    HostConfig: {
      NetworkMode: plan.network,
      RestartPolicy: { Name: "unless-stopped" },
      Memory: plan.resources.memoryBytes,
      MemorySwap: plan.resources.memoryBytes,
      NanoCpus: Math.round(plan.resources.cpus * 1e9),
      PidsLimit: plan.resources.pids,
      CapDrop: ["ALL"],
      CapAdd: plan.capAdd,
      SecurityOpt: ["no-new-privileges:true"],
      LogConfig: TENANT_LOG_CONFIG,
    },
    NetworkingConfig: { EndpointsConfig: { [plan.network]: { Aliases: plan.aliases } } },
  };
  if (plan.user) options.User = plan.user;
  // Only what injectedEnv set counts: a spec env of the same name never mounts anything.
  const secretsVersion = runtime.injectedEnv[SECRETS_VERSION_VAR];
  if (secretsVersion !== undefined) {
    const { label, mount } = secretFilesMount({ platform: plan.labels[LABEL.platform] ?? "", app: plan.app, env: plan.env, component: plan.component }, secretsVersion);
    options.Labels = { ...options.Labels, ...label };
    options.HostConfig = { ...options.HostConfig, Mounts: [mount] };
  }
  return withConfigHash(options);
}

/** Adds a label hashing the whole create body, so drift is one string comparison. */
export function withConfigHash(options: Dockerode.ContainerCreateOptions): Dockerode.ContainerCreateOptions {
  const hash = createHash("sha256").update(JSON.stringify(options)).digest("hex").slice(0, 16);
  return { ...options, Labels: { ...options.Labels, [LABEL.configHash]: hash } };
}

export function configHashOf(options: Dockerode.ContainerCreateOptions): string {
  return options.Labels?.[LABEL.configHash] ?? "";
}
