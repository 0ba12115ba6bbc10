// Database commands: rotate-password. The work is in src/database/rotate.ts (the HTTP API
// calls the same function); this file parses, opens the platform and prints.
import type { Command } from "commander";
import type { DeployDeps } from "../deploy/deploy.js";
import { BerthError } from "../errors.js";
import type { PlatformPlan } from "../plan/types.js";
import { audited, localActor } from "./audit.js";

interface DbOptions {
  host?: string;
  spec?: string;
  stateDir?: string;
  env?: string;
  json?: boolean;
  reason?: string;
  drain: string;
  healthWindow: string;
}

/** Finds the spec and state and wires the engine, the store and the database runtime; `openPlatform` of ./deploy.ts fits. */
export type OpenDeployPlatform = (options: { spec?: string; stateDir?: string }) => Promise<{ plan: PlatformPlan; stateDir: string; deps: DeployDeps }>;

function seconds(option: string, value: string): number {
  const parsed = Number(value);
  if (value.trim() === "" || !Number.isFinite(parsed) || parsed < 0 || parsed > 3600) {
    throw new BerthError("BAD_ARGUMENT", `${option} ${value}: expected a number of seconds 0-3600`, "Nothing was changed.");
  }
  return parsed * 1000;
}

export function registerDbCommands(cli: Command, open: OpenDeployPlatform): void {
  const db = cli.command("db").description("The environments' PostgreSQL databases");
  db.command("rotate-password")
    .description("Give an environment's database role a new password and roll it out with a zero-downtime deploy of the same images")
    .argument("<app>", "app name")
    .option("--env <env>", "environment, e.g. staging")
    .option("--reason <text>", "why, recorded with the release", "rotate database password")
    .option("--drain <seconds>", "how long replaced containers keep running after the switch", "2")
    .option("--health-window <seconds>", "how long the new release must stay healthy before the old one goes", "3")
    .option("--json", "print the release as JSON")
    .option("--host <url>", "a remote berthd (default BERTH_HOST, or host: in ~/.config/berth/config.yaml)")
    .option("--spec <path>", "spec directory (default BERTH_SPEC, or the current directory)")
    .option("--state-dir <dir>", "state directory (default /var/lib/berth/PLATFORM, or BERTH_STATE_DIR)")
    .action(async (app: string, options: DbOptions) => {
      if (!options.env) throw new BerthError("BAD_ARGUMENT", "db rotate-password needs --env ENV", `For example: berth db rotate-password ${app} --env staging`);
      const deployOptions = { drainMs: seconds("--drain", options.drain), healthWindowMs: seconds("--health-window", options.healthWindow) };
      const { remoteOf } = await import("./remote.js");
      const remote = await remoteOf(options);
      if (remote) {
        // berthd uses its own deploy timings; --reason, --drain and --health-window apply to local runs.
        const { runRemoteOperation } = await import("./deploy.js");
        const done = await runRemoteOperation(remote, `/v1/apps/${app}/envs/${options.env}/database/rotate-password`, undefined);
        process.stdout.write(options.json ? `${JSON.stringify(done.release, null, 2)}\n` : `${app}/${options.env}: new database password in use; r${done.release?.number} is serving\n`);
        return;
      }
      const { plan, stateDir, deps } = await open(options);
      const { rotatePassword } = await import("../database/rotate.js");
      const env = options.env;
      const release = await audited(stateDir, "rotateDatabasePassword", `${app}/${env}`, () =>
        rotatePassword(plan, app, env, deps, {
          actor: localActor(),
          ...(options.reason ? { reason: options.reason } : {}),
          deploy: deployOptions,
        }),
      );
      process.stdout.write(options.json ? `${JSON.stringify(release, null, 2)}\n` : `${app}/${options.env}: new database password in use; r${release.number} is serving\n`);
    });
}
