// A berthd job: one deploy, rollback, password rotation, reconcile pass or proxy refresh, run
// in a child process of berthd (see JobRunner in ./control.ts). The child loads what the work
// needs (dockerode, pg, the runtime) and exits when done, so berthd itself stays small while it
// idles. Progress lines and the outcome go back over the IPC channel.
// If berthd dies, the job exits at once (./child.ts): the deploy journal, as for a killed
// CLI, lets the next berthd repair what was left half-done.
import { rotatePassword } from "../database/rotate.js";
import { deploy, recoverDeploys, rollback, withReleases, type DeployDeps, type DeployRequest } from "../deploy/deploy.js";
import { BerthError } from "../errors.js";
import { connectDocker } from "../host/docker.js";
import type { PlatformPlan } from "../plan/types.js";
import { applyPlatform } from "../runtime/apply.js";
import { containerPostgres } from "../runtime/postgres.js";
import { refreshProxy } from "../runtime/watch.js";
import { SecretStore } from "../secrets/store.js";
import { Store } from "../state/store.js";
import { serveParent } from "./child.js";
import { RECONCILE_DEFERRED } from "./deferred.js";

export type Job =
  | { kind: "deploy"; request: DeployRequest }
  | { kind: "rollback"; request: { app: string; env: string; to?: number; actor: string } }
  | { kind: "rotate-password"; app: string; env: string; actor: string }
  /** Repairs interrupted deploys, then applies the spec with the deployed releases. */
  | { kind: "reconcile" }
  /** Re-renders nginx's upstreams from what runs now. */
  | { kind: "refresh-proxy" }
  /** Repairs interrupted deploys only (berthd's start). */
  | { kind: "recover" };

export interface JobInput {
  job: Job;
  plan: PlatformPlan;
  stateDir: string;
  keyPath: string;
  }

async function run({ job, plan, stateDir, keyPath }: JobInput, progress: (line: string) => void): Promise<unknown> {
  const docker = connectDocker();
  const store = new Store(stateDir);
  const secrets = new SecretStore(stateDir, { keyPath });
  const deps: DeployDeps = { docker, stateDir, store, databases: containerPostgres(docker, stateDir), progress, secrets };
  try {
    switch (job.kind) {
      case "deploy":
        return await deploy(plan, job.request, deps);
      case "rollback":
        return await rollback(plan, job.request, deps);
      case "rotate-password":
        return await rotatePassword(plan, job.app, job.env, deps, { actor: job.actor });
      case "recover":
        return await recoverDeploys(plan, deps);
      case "reconcile": {
        await recoverDeploys(plan, deps);
        // berthd's own deploys are over (a pass runs alone); one still locked is a CLI deploy
        // beside berthd, whose containers a pass must not touch: the pass waits, as apply does.
        const lock = store.locks()[0];
        if (lock) throw new BerthError("CONFLICT", `reconcile pass deferred: ${lock.app}/${lock.env} is being deployed by ${lock.holder} (pid ${lock.pid}) since ${lock.startedAt}`, RECONCILE_DEFERRED);
        return await applyPlatform(withReleases(plan, store.activeReleases()), { docker, stateDir, progress, databases: deps.databases, secrets: deps.secrets! });
      }
      case "refresh-proxy":
        return await refreshProxy(docker, withReleases(plan, store.activeReleases()), stateDir, progress);
    }
  } finally {
    secrets.close();
    store.close();
  }
}

serveParent(run);
