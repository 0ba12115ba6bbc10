// One handler per operation of the contract. Each checks the token's scope against the
// target before it reads or changes anything; long operations answer 202 with an operation.
import { rm, stat } from "node:fs/promises";
import type { ServerResponse } from "node:http";
import { environmentOf } from "../deploy/releases.js";
import { BerthError } from "../errors.js";
import type { Control } from "../daemon/control.js";
import { auditResult, describeScope, scopeAllows, type Scope, type Token } from "../state/access.js";
import type { Release } from "../state/store.js";
import type { OperationKind, OperationView } from "./operations.js";
import { refuse, toProblem } from "./problem.js";
import type { Handler, RequestContext } from "./server.js";
import { receiveUpload, uploadDir } from "./uploads.js";

interface EnvParams {
  app: string;
  env: string;
}

const actorOf = (token: Token) => `token:${token.name}`;

/** Refuses a token whose scope does not cover the target. */
function authorize(token: Token, app?: string, env?: string): void {
  if (scopeAllows(token.scope, app, env)) return;
  const what = app === undefined ? "platform-wide operations" : env === undefined ? `app ${app}` : `${app}/${env}`;
  throw refuse(403, "out-of-scope", `token "${token.name}" (${describeScope(token.scope)}) may not act on ${what}`);
}

function requireAdmin(token: Token): void {
  if (token.scope.kind !== "admin") throw refuse(403, "admin-only", `token "${token.name}" (${describeScope(token.scope)}) is not an admin token; only admin tokens manage tokens`);
}

export function createHandlers(control: Control): Record<string, Handler> {
  const { plan, store, access, secrets, operations } = control;

  /** Authorizes, then finds the environment in the spec (404 if it is not there). */
  const environment = (context: RequestContext) => {
    const { app, env } = context.params as unknown as EnvParams;
    authorize(context.token, app, env);
    return environmentOf(plan, app, env);
  };

  const refuseIfBusy = (app: string, env: string) => {
    const running = operations.running(app, env);
    const lock = store.lockOf(app, env);
    if (running || lock) {
      const by = running ? `${running.actor} (operation ${running.id}, since ${running.startedAt})` : `${lock!.holder} since ${lock!.startedAt}`;
      throw new BerthError("CONFLICT", `${app}/${env} is being deployed by ${by}`, "Wait for it to finish, then try again.");
    }
  };

  const startOperation = (context: RequestContext, kind: OperationKind, work: (progress: (line: string) => void) => Promise<Release>) => {
    const { app, env } = context.params as unknown as EnvParams;
    refuseIfBusy(app, env);
    // The request's audit entry says it was accepted; this one, appended when the work ends, what came of it.
    const recordOutcome = (finished: OperationView) =>
      access.audit({
        actor: context.token.name,
        tokenId: context.token.id,
        operation: `${kind} ${finished.id} ${finished.state}`,
        target: `${app}/${env}`,
        source: context.source,
        status: finished.error?.status ?? 200,
        result: auditResult(finished.error?.status ?? 200),
      });
    const view = operations.start({ kind, app, env, actor: actorOf(context.token) }, (progress) => control.lock.withShared(() => work(progress)), toProblem, recordOutcome);
    return { status: 202, body: view, headers: { location: `/v1/operations/${view.id}` } };
  };

  const operationOf = (context: RequestContext): OperationView => {
    const view = operations.get((context.params as { id: string }).id);
    if (!view) throw refuse(404, "not-found", `no operation ${(context.params as { id: string }).id}`);
    authorize(context.token, view.app, view.env);
    return view;
  };

  return {
    async getStatus(context) {
      return {
        status: 200,
        body: {
          platform: plan.platform,
          environments: await control.status(control.environments(context.token.scope)),
          drift: context.token.scope.kind === "admin" ? control.drift : [],
          reconciledAt: control.reconciledAt,
        },
      };
    },

    async listApps(context) {
      const apps = new Map<string, string[]>();
      for (const env of control.environments(context.token.scope)) apps.set(env.app, [...(apps.get(env.app) ?? []), env.env]);
      return { status: 200, body: { apps: [...apps].map(([name, environments]) => ({ name, environments })) } };
    },

    async getApp(context) {
      const { app } = context.params as { app: string };
      const scope: Scope = context.token.scope;
      if (scope.kind !== "admin" && scope.app !== app) authorize(context.token, app);
      const visible = control.environments(scope).filter((env) => env.app === app);
      if (visible.length === 0) {
        if (!plan.environments.some((env) => env.app === app)) throw new BerthError("NOT_FOUND", `no app ${app} in the spec`);
        authorize(context.token, app);
      }
      return { status: 200, body: { name: app, environments: await control.status(visible) } };
    },

    async getEnvironment(context) {
      const [status] = await control.status([environment(context)]);
      return { status: 200, body: status };
    },

    async getLogs(context) {
      const env = environment(context);
      const { component, lines } = context.query as { component?: string; lines: number };
      if (component !== undefined && !env.components.some((c) => c.name === component)) {
        throw refuse(404, "not-found", `${env.app} has no component ${component}`, { hint: `Its components: ${env.components.map((c) => c.name).join(", ")}.` });
      }
      const containers = [];
      for (const c of env.components.filter((c) => component === undefined || c.name === component)) {
        for (const container of c.containers) {
          const text = await control.engine.logTail(container.name, lines);
          containers.push({ name: container.name, component: c.name, lines: text === "" ? [] : text.split("\n") });
        }
      }
      return { status: 200, body: { containers } };
    },

    async uploadSource(context) {
      const env = environment(context);
      if (!env.components.some((c) => c.image.kind === "build")) {
        throw refuse(400, "invalid-request", `${env.app} has no component built from source; deploy it with images instead`);
      }
      const isGzip = (context.request.headers["content-type"] ?? "").startsWith("application/gzip");
      return { status: 201, body: await receiveUpload(context.request, control.stateDir, isGzip) };
    },

    async createDeploy(context) {
      const env = environment(context);
      const body = context.body as { images?: Record<string, string>; ref?: string; source?: string; reason?: string };
      const given = (["images", "ref", "source"] as const).filter((key) => body[key] !== undefined);
      if (given.length > 1) {
        throw refuse(400, "invalid-request", `give one of images, ref or source, not ${given.join(" and ")}`, { errors: given.slice(1).map((key) => ({ path: `body.${key}`, message: `cannot be combined with ${given[0]}` })) });
      }
      const names = env.components.map((c) => c.name);
      for (const [component, ref] of Object.entries(body.images ?? {})) {
        if (!names.includes(component)) throw refuse(400, "invalid-request", `${env.app} has no component ${component}`, { errors: [{ path: `body.images.${component}`, message: `is not a component of ${env.app} (${names.join(", ")})` }] });
        if (!(await control.engine.imageExists(ref))) throw new BerthError("IMAGE_MISSING", `image ${ref} for ${env.app}/${component} is not on this host`, "Build or load it first; nothing was changed.");
      }
      let sourceDir: string | undefined;
      if (body.source !== undefined) {
        sourceDir = uploadDir(control.stateDir, body.source);
        if (!(await stat(sourceDir).then(() => true, () => false))) throw refuse(404, "not-found", `no upload ${body.source} (uploads expire after an hour)`);
      }
      if (body.ref !== undefined && !env.components.some((c) => c.image.kind === "build" && c.image.source.kind === "git")) {
        throw refuse(400, "invalid-request", `${env.app} is not built from a git repository`, { errors: [{ path: "body.ref", message: "needs source: { git } in the app file" }] });
      }
      return startOperation(context, "deploy", async (progress) => {
        try {
          const request = { app: env.app, env: env.env, images: body.images ?? {}, ...(body.ref === undefined ? {} : { ref: body.ref }), ...(sourceDir ? { sourceDir } : {}), actor: actorOf(context.token), reason: body.reason ?? "deploy" };
          return await control.jobs.run<Release>({ kind: "deploy", request }, progress);
        } finally {
          if (sourceDir) await rm(sourceDir, { recursive: true, force: true });
        }
      });
    },

    async createRollback(context) {
      const env = environment(context);
      const { to } = context.body as { to?: number };
      if (to !== undefined && !store.release(env.app, env.env, to)) throw refuse(404, "not-found", `${env.app}/${env.env} has no release r${to}`);
      const request = { app: env.app, env: env.env, ...(to === undefined ? {} : { to }), actor: actorOf(context.token) };
      return startOperation(context, "rollback", (progress) => control.jobs.run<Release>({ kind: "rollback", request }, progress));
    },

    async listReleases(context) {
      const env = environment(context);
      return { status: 200, body: { releases: store.releases(env.app, env.env) } };
    },

    async rotateDatabasePassword(context) {
      const env = environment(context);
      if (!env.database) throw refuse(400, "invalid-request", `${env.app}/${env.env} has no database`);
      return startOperation(context, "rotate-password", (progress) => control.jobs.run<Release>({ kind: "rotate-password", app: env.app, env: env.env, actor: actorOf(context.token) }, progress));
    },

    async getOperation(context) {
      return { status: 200, body: operationOf(context) };
    },

    async streamOperation(context) {
      const view = operationOf(context);
      return {
        stream: (response: ServerResponse) => {
          response.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-store", connection: "keep-alive" });
          const heartbeat = setInterval(() => response.write(": keep-alive\n\n"), 15_000);
          const unsubscribe = operations.subscribe(view.id, (event) => {
            response.write(`event: ${event.type}\ndata: ${JSON.stringify(event.data)}\n\n`);
            if (event.type === "end") {
              clearInterval(heartbeat);
              response.end();
            }
          });
          response.on("close", () => {
            clearInterval(heartbeat);
            unsubscribe();
          });
        },
      };
    },

    async listSecrets(context) {
      const env = environment(context);
      return { status: 200, body: { secrets: secrets.list(env.app, env.env) } };
    },

    async setSecret(context) {
      const env = environment(context);
      const { name } = context.params as { name: string };
      const change = secrets.set(env.app, env.env, name, (context.body as { value: string }).value);
      return { status: 200, body: { name: change.name, version: change.version, updatedAt: change.createdAt } };
    },

    async unsetSecret(context) {
      const env = environment(context);
      const { name } = context.params as { name: string };
      const change = secrets.unset(env.app, env.env, name);
      return { status: 200, body: { name: change.name, version: change.version, updatedAt: change.createdAt } };
    },

    async listTokens(context) {
      requireAdmin(context.token);
      return { status: 200, body: { tokens: access.tokens() } };
    },

    async createToken(context) {
      requireAdmin(context.token);
      const { name, scope } = context.body as { name: string; scope: Scope };
      if (scope.kind !== "admin") {
        if (!plan.environments.some((e) => e.app === scope.app)) throw refuse(400, "invalid-request", `no app ${scope.app} in the spec`, { errors: [{ path: "body.scope.app", message: "is not an app of the spec" }] });
        if (scope.kind === "environment") environmentOf(plan, scope.app, scope.env);
      }
      const { token, value } = access.createToken(name, scope, actorOf(context.token));
      context.setTarget(`token:${token.id}`);
      return { status: 201, body: { ...token, token: value } };
    },

    async revokeToken(context) {
      requireAdmin(context.token);
      const { id } = context.params as { id: string };
      context.setTarget(`token:${id}`);
      return { status: 200, body: access.revokeToken(id) };
    },

    async listAudit(context) {
      const { app, limit, cursor } = context.query as { app?: string; limit: number; cursor?: string };
      const scope = context.token.scope;
      if (scope.kind !== "admin" && app !== undefined && app !== scope.app) authorize(context.token, app);
      const filter = scope.kind === "admin" ? { app } : scope.kind === "app" ? { app: scope.app } : { app: scope.app, env: scope.env };
      return { status: 200, body: access.auditLog({ ...filter, limit, ...(cursor === undefined ? {} : { before: Number(cursor) }) }) };
    },
  };
}
