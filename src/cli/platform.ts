// Commands that act on a running platform: apply and down.
import type { Command } from "commander";
import { BerthError } from "../errors.js";
import { planPlatform } from "../plan/plan.js";
import type { Change } from "../runtime/apply.js";
import { loadSpec } from "../spec/index.js";
import { audited } from "./audit.js";

interface StateOptions {
  stateDir?: string;
}

/** Flags > environment > default, as everywhere in berth. */
function stateDirFor(platform: string, options: StateOptions): string {
  return options.stateDir ?? process.env.BERTH_STATE_DIR ?? `/var/lib/berth/${platform}`;
}

const progress = (line: string) => process.stderr.write(`${line}\n`);

function printChanges(changes: Change[], json: boolean | undefined): void {
  if (json) {
    process.stdout.write(JSON.stringify({ changes }, null, 2) + "\n");
    return;
  }
  if (changes.length === 0) {
    process.stdout.write("nothing to change: the platform matches the spec\n");
    return;
  }
  for (const change of changes) process.stdout.write(`${change.kind.padEnd(8)} ${change.target}${change.detail ? `  (${change.detail})` : ""}\n`);
}

export function registerPlatformCommands(cli: Command): void {
  cli
    .command("apply")
    .description("Bring this host to the spec: networks, PostgreSQL, tenant containers, nginx")
    .argument("<path>", "spec directory or platform.yaml")
    .option("--state-dir <dir>", "where berth keeps proxy config, certificates and passwords (default /var/lib/berth/PLATFORM, or BERTH_STATE_DIR)")
    .option("--purge", "also drop the databases of environments removed from the spec")
    .option("--json", "print the changes as JSON")
    .option("--watch", "then keep nginx's upstreams right as tenant containers restart, until interrupted")
    .action(async (path: string, options: StateOptions & { purge?: boolean; json?: boolean; watch?: boolean }) => {
      const { root, spec } = await loadSpec(path);
      const planned = planPlatform(spec, { root });
      const { connectDocker, containerPostgres, Store, recoverDeploys, withReleases, applyPlatform, watchPlatform, SecretStore, secretsKeyPath } = await import("./heavy.js");
      const stateDir = stateDirFor(planned.platform, options);
      const docker = connectDocker();
      const started = Date.now();
      const databases = containerPostgres(docker, stateDir);
      const store = new Store(stateDir);
      await recoverDeploys(planned, { docker, stateDir, store, databases, progress });
      const lock = store.locks()[0];
      if (lock) {
        throw new BerthError("CONFLICT", `apply refused: ${lock.app}/${lock.env} is being deployed by ${lock.holder} since ${lock.startedAt}`, "Wait for the deploy to finish, then apply again.");
      }
      // Deployed releases are part of the desired state: apply keeps their images.
      const plan = withReleases(planned, store.activeReleases());
      const secretStore = new SecretStore(stateDir, { keyPath: secretsKeyPath(plan.platform) });
      const changes = await audited(stateDir, "applyPlatform", "platform", async () => {
        const applied = await applyPlatform(plan, { docker, stateDir, progress, databases, secrets: secretStore }, { purge: options.purge ?? false });
        if (plan.control) {
          const { ensureControl } = await import("../runtime/control.js");
          applied.push(...(await ensureControl(docker, plan.control, { stateDir, keyPath: secretsKeyPath(plan.platform) }, progress)));
        }
        return applied;
      });
      printChanges(changes, options.json);
      progress(`applied in ${((Date.now() - started) / 1000).toFixed(1)} s`);
      if (!options.watch) return;
      const stop = new AbortController();
      process.once("SIGINT", () => stop.abort());
      process.once("SIGTERM", () => stop.abort());
      progress("watching tenant containers (Ctrl-C to stop)");
      await watchPlatform(docker, plan, stateDir, stop.signal, (changed, trigger) => {
        if (changed.length > 0) progress(`${trigger}: proxy re-rendered`);
      }, progress);
    });

  cli
    .command("down")
    .description("Stop the platform: remove its containers and networks; data is kept unless --purge")
    .argument("<path>", "spec directory or platform.yaml")
    .option("--state-dir <dir>", "state directory (default /var/lib/berth/PLATFORM, or BERTH_STATE_DIR)")
    .option("--purge", "also delete the database volume and the state directory (destroys data)")
    .option("--yes", "confirm --purge without asking")
    .option("--json", "print the changes as JSON")
    .action(async (path: string, options: StateOptions & { purge?: boolean; yes?: boolean; json?: boolean }) => {
      const { root, spec } = await loadSpec(path);
      const plan = planPlatform(spec, { root });
      if (options.purge && !options.yes) {
        throw new BerthError("BAD_ARGUMENT", `--purge deletes every database of platform ${plan.platform}`, `Run again with --yes to confirm: berth down ${path} --purge --yes`);
      }
      const { connectDocker, downPlatform } = await import("./heavy.js");
      const stateDir = stateDirFor(plan.platform, options);
      const down = () => downPlatform(connectDocker(), plan, stateDir, { purge: options.purge ?? false });
      // --purge deletes the state directory, the audit log with it.
      const changes = options.purge ? await down() : await audited(stateDir, "downPlatform", "platform", down);
      printChanges(changes, options.json);
    });
}
