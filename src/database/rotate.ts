// Rotating an environment's database password: a new password on the role, rolled out by a
// zero-downtime deploy of the images that serve now.
//
// Order, and the window it leaves. PostgreSQL gives a role one password, so there is no
// moment when both the old and the new one log in:
//   1. checks that change nothing: the environment has a database, no deploy runs, and
//      something serves it (the images to roll out again);
//   2. the new password is saved, then set on the role (ALTER ROLE with its verifier).
//      Sessions already open are not affected: the running containers keep their pooled
//      connections and keep serving;
//   3. a deploy of the same images: release command and new containers with the new
//      DATABASE_URL, health-checked, then the proxy switches to them, then the old ones drain.
// The window is from step 2 to the switch in step 3 (a few seconds: the release command and
// the new containers' start): in it the OLD containers cannot open NEW connections. An app
// that keeps a pool of open connections (as the example backends do) serves throughout; one
// that connects per request fails its requests in the window. The new containers are not
// exposed to it: they start with the new password.
// If the deploy fails (the old release keeps serving, or is switched back to), the previous
// password is put back on the role, so the old containers can open connections again. If
// berth is killed mid-way, the next deploy or apply finds the new password saved and rolls
// it out (apply replaces the containers whose DATABASE_URL changed).
import { deploy, environmentOf, recoverDeploys, type DeployDeps, type DeployOptions } from "../deploy/deploy.js";
import { BerthError } from "../errors.js";
import { inspectContainer } from "../host/docker.js";
import type { Release } from "../state/store.js";
import type { PlatformPlan } from "../plan/types.js";

export interface RotateOptions {
  /** Who asked (recorded with the release). */
  actor: string;
  /** Recorded with the release; default "rotate database password". */
  reason?: string;
  /** Timings of the deploy (health window, drain). */
  deploy?: DeployOptions | undefined;
}

export const ROTATE_REASON = "rotate database password";

/** The images that serve the environment now: its active release's, else those of its running containers. */
async function servingImages(plan: PlatformPlan, app: string, env: string, deps: DeployDeps): Promise<{ images: Record<string, string>; secretsVersion?: number | null }> {
  const active = deps.store.activeRelease(app, env);
  // Only the password changes: the containers keep the images and secrets of the release that serves.
  if (active) return { images: { ...active.images }, secretsVersion: active.secretsVersion };
  const images: Record<string, string> = {};
  for (const component of environmentOf(plan, app, env).components) {
    const first = component.containers[0];
    const info = first ? await inspectContainer(deps.docker, first.name) : undefined;
    if (info?.State.Running) images[component.name] = info.Config.Image;
  }
  return { images };
}

/**
 * Gives APP/ENV's database role a new password and rolls it out with a deploy of the same
 * images; returns that release. Bad input (no such environment, no database, nothing
 * running, a deploy in progress) is refused before anything changes.
 */
export async function rotatePassword(plan: PlatformPlan, app: string, env: string, deps: DeployDeps, options: RotateOptions): Promise<Release> {
  const environment = environmentOf(plan, app, env);
  const database = environment.database;
  if (!database) {
    throw new BerthError("BAD_ARGUMENT", `${app}/${env} has no database: no component of ${app} sets database: true`, "Nothing was changed.");
  }
  // A deploy that died leaves a lock: recover it first, so only a live one refuses.
  await recoverDeploys(plan, deps);
  const lock = deps.store.lockOf(app, env);
  if (lock) {
    throw new BerthError("CONFLICT", `${app}/${env} is being deployed by ${lock.holder} since ${lock.startedAt}`, "Wait for it to finish, then rotate again; nothing was changed.");
  }
  const { images, secretsVersion } = await servingImages(plan, app, env, deps);
  if (Object.keys(images).length === 0) {
    throw new BerthError("NOT_FOUND", `nothing serves ${app}/${env}: no release and no running container to roll the new password out to`, `Start it first (berth apply or berth deploy ${app} --env ${env}); nothing was changed.`);
  }

  const rotation = await deps.databases.rotatePassword(plan, database, deps.progress);
  try {
    return await deploy(plan, { app, env, images, secretsVersion, actor: options.actor, reason: options.reason ?? ROTATE_REASON }, deps, options.deploy);
  } catch (error) {
    try {
      await rotation.restore();
    } catch (restoreError) {
      throw new BerthError(
        "DATABASE_FAILED",
        `the deploy with the new password failed (${(error as Error).message}), and putting the previous password back failed too: ${(restoreError as Error).message}`,
        "Run berth apply: it sets the saved password on the role and rolls it out to the containers.",
        { cause: error },
      );
    }
    const message = `${(error as Error).message}\nThe previous database password was put back; the old release keeps serving with it.`;
    throw error instanceof BerthError ? new BerthError(error.code, message, error.hint, { cause: error }) : new BerthError("INTERNAL", message, undefined, { cause: error });
  }
}
