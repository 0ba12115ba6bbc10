// Keeps nginx's upstreams right between applies: when a tenant container starts, dies or
// changes health (a restart may give it a new address), the proxy configuration is
// re-rendered from what runs and nginx reloads gracefully. Upstreams hold addresses, not
// names resolved per request, so nginx keeps its keepalive connections to them.
import type { Docker } from "../host/docker.js";
import { EngineClient } from "../host/engine.js";
import type { PlatformPlan } from "../plan/types.js";
import type { Change } from "./apply.js";
import type { Progress } from "./images.js";
import { ensureProxy, servingNow } from "./proxy.js";

/** Events that can change which addresses should receive traffic. */
const RELEVANT = ["start", "die", "health_status", "rename", "destroy"];
const DEBOUNCE_MS = 50;

/** Re-renders the proxy from the containers running now; returns what changed. */
export async function refreshProxy(docker: Docker, plan: PlatformPlan, stateDir: string, progress: Progress): Promise<Change[]> {
  return ensureProxy(docker, plan, stateDir, await servingNow(docker, plan), progress);
}

/**
 * Follows the engine's events for this platform's tenants until `signal` aborts.
 * `onRefresh` hears each re-render (for logs and tests).
 */
export async function watchPlatform(
  docker: Docker,
  plan: PlatformPlan,
  stateDir: string,
  signal: AbortSignal,
  onRefresh: (changes: Change[], trigger: string) => void,
  progress: Progress,
): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> = Promise.resolve();
  let trigger = "";
  const refresh = () => {
    const cause = trigger;
    running = running
      .then(async () => onRefresh(await refreshProxy(docker, plan, stateDir, progress), cause))
      .catch((error: unknown) => progress(`proxy refresh failed: ${(error as Error).message}`));
  };
  try {
    await new EngineClient().followContainerEvents({ event: RELEVANT, label: [`berth.platform=${plan.platform}`, "berth.role=tenant"] }, signal, (event) => {
      trigger = `${event.action} ${event.name}`.trim();
      // Several events arrive together (die, then start): one render covers them all.
      clearTimeout(timer);
      timer = setTimeout(refresh, DEBOUNCE_MS);
    });
  } finally {
    clearTimeout(timer);
  }
  await running;
}
