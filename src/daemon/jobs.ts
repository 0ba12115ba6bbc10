// A berthd job: one deploy, rollback, password rotation, reconcile pass or proxy refresh, run
// in a child process of berthd (see JobRunner in ./control.ts). The child loads what the work
// needs (dockerode, pg, the runtime) and exits when done, so berthd itself stays small while it
// idles. Progress lines and the outcome go back over the IPC channel.
//
// If berthd dies, the channel closes and the job exits at once: the deploy journal, as for a
// killed CLI, lets the next berthd repair what was left half-done. SIGTERM and SIGINT are
// berthd's to handle (a terminal's Ctrl-C and systemd reach the whole group): a job runs on
// through berthd's grace period.
import { rotatePassword } from "../database/rotate.js";
import { deploy, recoverDeploys, rollback, withReleases, type DeployDeps, type DeployOptions, type DeployRequest } from "../deploy/deploy.js";
import { BerthError } from "../errors.js";
import { connectDocker } from "../host/docker.js";
import type { PlatformPlan } from "../plan/types.js";
import { applyPlatform } from "../runtime/apply.js";
import { containerPostgres } from "../runtime/postgres.js";
import { refreshProxy } from "../runtime/watch.js";
import { SecretStore } from "../secrets/store.js";
import { Store } from "../state/store.js";

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
  deployOptions?: DeployOptions;
}

export type JobMessage =
  | { type: "progress"; line: string }
  | { type: "result"; value: unknown }
  | { type: "error"; error: { code: BerthError["code"]; message: string; hint?: string } };

async function run({ job, plan, stateDir, keyPath, deployOptions }: JobInput, progress: (line: string) => void): Promise<unknown> {
  const docker = connectDocker();
  const store = new Store(stateDir);
  const secrets = new SecretStore(stateDir, { keyPath });
  const deps: DeployDeps = { docker, stateDir, store, databases: containerPostgres(docker, stateDir), progress, secrets: (app, env) => secrets.values(app, env) };
  try {
    switch (job.kind) {
      case "deploy":
        return await deploy(plan, job.request, deps, deployOptions);
      case "rollback":
        return await rollback(plan, job.request, deps, deployOptions);
      case "rotate-password":
        return await rotatePassword(plan, job.app, job.env, deps, { actor: job.actor, deploy: deployOptions });
      case "recover":
        return await recoverDeploys(plan, deps);
      case "reconcile":
        await recoverDeploys(plan, deps);
        return await applyPlatform(withReleases(plan, store.activeReleases()), { docker, stateDir, progress, databases: deps.databases, secrets: deps.secrets! });
      case "refresh-proxy":
        return await refreshProxy(docker, withReleases(plan, store.activeReleases()), stateDir, progress);
    }
  } finally {
    secrets.close();
    store.close();
  }
}

const send = (message: JobMessage): Promise<void> => new Promise((resolve) => process.send!(message, undefined, {}, () => resolve()));

if (process.send) {
  process.on("disconnect", () => process.exit(70));
  process.on("SIGTERM", () => undefined);
  process.on("SIGINT", () => undefined);
  process.once("message", (input: JobInput) => {
    run(input, (line) => void send({ type: "progress", line }))
      .then(
        (value) => send({ type: "result", value }),
        (error: unknown) => {
          const known = error instanceof BerthError;
          return send({ type: "error", error: { code: known ? error.code : "INTERNAL", message: (error as Error).message ?? String(error), ...(known && error.hint ? { hint: error.hint } : {}) } });
        },
      )
      // Everything is sent: the engine's and PostgreSQL's sockets need not be closed one by one.
      .finally(() => process.exit(0));
  });
}
