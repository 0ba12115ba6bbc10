// What the spec's plan becomes once releases are deployed: pure functions over the plan and
// the store's records, with no engine behind them, so berthd's own process can use them.
import { BerthError } from "../errors.js";
import type { EnvironmentPlan, ImageSource, PlatformPlan } from "../plan/types.js";
import type { Release } from "../state/store.js";

export function environmentOf(plan: PlatformPlan, app: string, env: string): EnvironmentPlan {
  const found = plan.environments.find((e) => e.app === app && e.env === env);
  if (found) return found;
  const known = plan.environments.map((e) => `${e.app}/${e.env}`).join(", ");
  throw new BerthError("NOT_FOUND", `no environment ${app}/${env} in the spec`, `Known environments: ${known}.`);
}

/** The plan with each environment's images taken from its active release, so apply keeps what was deployed. */
export function withReleases(plan: PlatformPlan, releases: readonly (Pick<Release, "app" | "env" | "images"> & Partial<Pick<Release, "secretsVersion">>)[]): PlatformPlan {
  return {
    ...plan,
    environments: plan.environments.map((env) => {
      const release = releases.find((r) => r.app === env.app && r.env === env.env);
      if (!release) return env;
      return {
        ...env,
        secretsVersion: release.secretsVersion ?? undefined,
        components: env.components.map((component) => {
          const ref = release.images[component.name];
          if (!ref) return component;
          const image: ImageSource = { kind: "image", ref };
          return { ...component, image, containers: component.containers.map((container) => ({ ...container, image })) };
        }),
      };
    }),
  };
}
