// The control plane inside berthd: the spec's plan, the stores, and the reconcile loop.
// Deploys of different environments run side by side; a reconcile pass (a full apply of
// the spec with the deployed releases) runs alone, so it never sees a half-made release.
// Both run as jobs in child processes (./jobs.ts); this process reads the engine through
// a small socket client only.
import type { ChildProcess } from "node:child_process";
import type { ContainerInfo } from "dockerode";
import type { Logger } from "pino";
import { Operations } from "../api/operations.js";
import { withReleases } from "../deploy/releases.js";
import { BerthError } from "../errors.js";
import { EngineClient, type ContainerEvent } from "../host/engine.js";
import { LABEL } from "../plan/names.js";
import type { EnvironmentPlan, PlatformPlan } from "../plan/types.js";
import type { Change } from "../runtime/apply.js";
import { secretsKeyPath } from "../secrets/keys.js";
import { SecretStore } from "../secrets/store.js";
import { AccessStore, scopeAllows, type Scope } from "../state/access.js";
import { Store } from "../state/store.js";
import { runChild } from "./child.js";
import { RECONCILE_DEFERRED } from "./deferred.js";
import type { Job, JobInput } from "./jobs.js";

export interface Drift {
  target: string;
  detail: string;
  at: string;
}

export interface EnvironmentStatus {
  app: string;
  env: string;
  release: string | null;
  deploying: string | null;
  domains: string[];
  containers: { name: string; component: string; state: string }[];
}

/** Many holders of "shared" (deploys) at once, or one of "exclusive" (a reconcile pass). */
export class SharedLock {
  private shared = 0;
  private exclusive: Promise<void> | undefined;
  private readonly waiters: (() => void)[] = [];

  async withShared<T>(work: () => Promise<T>): Promise<T> {
    while (this.exclusive) await this.exclusive;
    this.shared++;
    try {
      return await work();
    } finally {
      this.shared--;
      if (this.shared === 0) this.waiters.splice(0).forEach((wake) => wake());
    }
  }

  async withExclusive<T>(work: () => Promise<T>): Promise<T> {
    while (this.exclusive) await this.exclusive;
    let release!: () => void;
    this.exclusive = new Promise<void>((resolve) => (release = resolve));
    try {
      while (this.shared > 0) await new Promise<void>((wake) => this.waiters.push(wake));
      return await work();
    } finally {
      this.exclusive = undefined;
      release();
    }
  }
}

/** Runs jobs (./jobs.ts) in child processes, one each; knows those running. */
export class JobRunner {
  private readonly children = new Set<ChildProcess>();

  constructor(private readonly input: Omit<JobInput, "job">) {}

  get running(): number {
    return this.children.size;
  }

  /** Ends the jobs still running (after berthd's grace period): their journals are left for the next start. */
  abandon(): void {
    for (const child of this.children) child.kill("SIGKILL");
  }

  async run<T>(job: Job, progress: (line: string) => void): Promise<T> {
    let started: ChildProcess | undefined;
    try {
      return await runChild<T>("jobs", { ...this.input, job } satisfies JobInput, progress, (child) => this.children.add((started = child)));
    } finally {
      if (started) this.children.delete(started);
    }
  }
}

/** The plan and the contract document, read by ./plan-worker (see there why). */
function readInChild(specPath: string): Promise<{ plan: PlatformPlan; document: Record<string, unknown> }> {
  return runChild("plan-worker", { specPath }, () => undefined);
}

const MAX_DRIFT = 100;
/** How old a container listing may be when a status read uses it. */
const STATUS_TTL_MS = 1000;
/** Pause before following the engine's events again after the stream failed. */
const EVENTS_RETRY_MS = 2000;

export class Control {
  readonly lock = new SharedLock();
  readonly drift: Drift[] = [];
  reconciledAt: string | null = null;

  private constructor(
    readonly plan: PlatformPlan,
    /** The API contract, as read beside the spec; the server compiles it. */
    readonly contractDocument: Record<string, unknown>,
    readonly stateDir: string,
    readonly engine: EngineClient,
    readonly jobs: JobRunner,
    readonly store: Store,
    readonly access: AccessStore,
    readonly secrets: SecretStore,
    readonly operations: Operations,
    private readonly log: Logger,
  ) {}

  static async open(specPath: string, options: { stateDir?: string; log: Logger }): Promise<Control> {
    const { plan, document } = await readInChild(specPath);
    const stateDir = options.stateDir ?? `/var/lib/berth/${plan.platform}`;
    const keyPath = secretsKeyPath(plan.platform);
    return new Control(
      plan,
      document,
      stateDir,
      new EngineClient(),
      new JobRunner({ plan, stateDir, keyPath }),
      new Store(stateDir),
      new AccessStore(stateDir),
      new SecretStore(stateDir, { keyPath }),
      new Operations(stateDir),
      options.log,
    );
  }

  close(): void {
    this.operations.close();
    this.secrets.close();
    this.access.close();
    this.store.close();
  }

  environments(scope: Scope): EnvironmentPlan[] {
    return this.plan.environments.filter((env) => scopeAllows(scope, env.app, env.env));
  }

  private listing: { at: number; containers: Promise<ContainerInfo[]> } | undefined;

  /**
   * The platform's tenant containers. Status reads arriving together share one engine call,
   * and its answer serves for up to STATUS_TTL_MS.
   */
  private tenantContainers(): Promise<ContainerInfo[]> {
    if (this.listing && Date.now() - this.listing.at < STATUS_TTL_MS) return this.listing.containers;
    const containers = this.engine.listContainers({ label: [`berth.platform=${this.plan.platform}`, "berth.role=tenant"] });
    this.listing = { at: Date.now(), containers };
    containers.catch(() => (this.listing = undefined));
    return containers;
  }

  /** The status of environments, from one engine call for all their containers. */
  async status(environments: EnvironmentPlan[]): Promise<EnvironmentStatus[]> {
    const listed = await this.tenantContainers();
    const states = new Map<string, string>();
    for (const container of listed) {
      const health = /\((healthy|unhealthy|health: starting)\)/.exec(container.Status)?.[1]?.replace("health: ", "");
      for (const name of container.Names) states.set(name.replace(/^\//, ""), health ?? container.State);
    }
    const withDeployed = withReleases({ ...this.plan, environments }, this.store.activeReleases());
    return withDeployed.environments.map((env) => {
      const release = this.store.activeRelease(env.app, env.env);
      const lock = this.store.lockOf(env.app, env.env);
      return {
        app: env.app,
        env: env.env,
        release: release ? `r${release.number}` : null,
        deploying: lock ? `r${this.store.releaseById(lock.releaseId)?.number ?? "?"}` : null,
        domains: env.domains,
        containers: env.components.flatMap((component) =>
          component.containers.map((container) => ({ name: container.name, component: component.name, state: states.get(container.name) ?? "missing" })),
        ),
      };
    });
  }

  /**
   * One reconcile pass: repairs interrupted deploys, then applies the spec with the deployed
   * releases. What it had to change is drift (a crashed or removed container, a stale
   * upstream, a missing network) and is reported.
   */
  async reconcile(trigger: string): Promise<Change[]> {
    return this.lock.withExclusive(async () => {
      const started = Date.now();
      const changes = await this.jobs.run<Change[]>({ kind: "reconcile" }, (line) => this.log.debug({ trigger }, line));
      const at = new Date().toISOString();
      this.reconciledAt = at;
      for (const change of changes) {
        this.drift.push({ target: change.target, detail: `${change.kind}${change.detail ? `: ${change.detail}` : ""} (after ${trigger})`, at });
        this.log.warn({ trigger, target: change.target, change: change.kind, detail: change.detail }, "drift repaired");
      }
      this.drift.splice(0, Math.max(0, this.drift.length - MAX_DRIFT));
      this.log.info({ trigger, changes: changes.length, ms: Date.now() - started }, "reconcile pass");
      return changes;
    });
  }

  /** Re-renders nginx's upstreams from what runs now (a restart's new address, a health change). */
  async refreshProxy(trigger: string): Promise<Change[]> {
    return this.lock.withExclusive(async () => {
      const changes = await this.jobs.run<Change[]>({ kind: "refresh-proxy" }, (line) => this.log.debug({ trigger }, line));
      if (changes.length > 0) this.log.info({ trigger, changes: changes.length }, "proxy refreshed");
      return changes;
    });
  }

  /**
   * Follows the engine's events for this platform's containers until `signal` aborts: a
   * container of the platform that dies, stops or disappears triggers a reconcile pass; a
   * tenant that starts (a new address) or changes health only a proxy refresh. Both are
   * debounced, and a slow periodic pass catches what events miss.
   */
  async watch(signal: AbortSignal, options: { debounceMs?: number; periodMs?: number; retryMs?: number; initial?: string } = {}): Promise<void> {
    const debounceMs = options.debounceMs ?? 500;
    const retryMs = options.retryMs ?? 30_000;
    let timer: NodeJS.Timeout | undefined;
    let pending: { trigger: string; isFull: boolean } | undefined;
    let running: Promise<unknown> = Promise.resolve();
    let retry: NodeJS.Timeout | undefined;
    const schedule = (trigger: string, isFull = true) => {
      pending = pending ? { trigger: pending.trigger, isFull: pending.isFull || isFull } : { trigger, isFull };
      clearTimeout(timer);
      timer = setTimeout(() => {
        const { trigger: cause, isFull: full } = pending!;
        pending = undefined;
        running = running
          .then(() => (full ? this.reconcile(cause) : this.refreshProxy(cause)))
          .catch((error: unknown) => {
            if (signal.aborted) return;
            // A failed pass is tried again: what failed (an engine hiccup, a name taken) may clear;
            // one deferred by a deploy running beside berthd runs once that deploy is over.
            if (error instanceof BerthError && error.hint === RECONCILE_DEFERRED) this.log.info({ trigger: cause }, `${error.message}; trying again in ${retryMs / 1000} s`);
            else this.log.error({ err: error, trigger: cause }, `reconcile pass failed; trying again in ${retryMs / 1000} s`);
            clearTimeout(retry);
            retry = setTimeout(() => schedule(`retry after: ${(error as Error).message.split("\n")[0]}`), retryMs);
          });
      }, debounceMs);
    };
    const periodic = setInterval(() => schedule("periodic check"), options.periodMs ?? 10 * 60_000);
    if (options.initial) schedule(options.initial);
    const filters = { event: ["die", "destroy", "health_status", "stop", "start"], label: [`berth.platform=${this.plan.platform}`] };
    const onEvent = ({ action, name, labels }: ContainerEvent) => {
      const role = labels["berth.role"] ?? "";
      // One-off containers (release commands, builds) come and go by design, and so do the
      // containers of an environment being deployed: none of that is drift. Another
      // environment's container that dies meanwhile is (its pass runs after the deploy).
      if (!["tenant", "proxy", "postgres"].includes(role) || name.endsWith("-next")) return;
      if (this.store.locks().some((lock) => lock.app === labels[LABEL.app] && lock.env === labels[LABEL.env])) return;
      const isRouting = role === "tenant" && (action === "start" || action.startsWith("health_status"));
      // A platform service's start, or its health check flapping while it runs (a slow check on
      // a busy host), is nothing a pass could repair; its death or removal is.
      if ((action === "start" || action.startsWith("health_status")) && !isRouting) return;
      schedule(`${action} ${name}`.trim(), !isRouting);
    };
    try {
      // The event stream ends when the engine restarts: follow again once it answers, with a
      // full pass, since what happened in between was not seen.
      while (!signal.aborted) {
        try {
          await this.engine.followContainerEvents(filters, signal, onEvent);
        } catch (error) {
          if (signal.aborted) break;
          this.log.warn({ err: error }, `lost the engine's event stream; following again in ${EVENTS_RETRY_MS / 1000} s`);
          await new Promise((resolve) => setTimeout(resolve, EVENTS_RETRY_MS));
          if (!signal.aborted) schedule("the engine's event stream came back");
        }
      }
    } finally {
      clearTimeout(timer);
      clearTimeout(retry);
      clearInterval(periodic);
    }
    await running;
  }
}
