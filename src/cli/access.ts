// Commands about access and what happened: tokens, audit, logs, apps. Each works against a
// remote berthd (--host / BERTH_HOST) or, on the server, directly on the state.
import type { Command } from "commander";
import { BerthError } from "../errors.js";
import type { AuditEntry, Scope, Token } from "../state/access.js";
import { audited, localActor } from "./audit.js";
import { openPlatform, withSpecOptions } from "./deploy.js";
import { call, remoteOf } from "./remote.js";

interface Options {
  host?: string;
  spec?: string;
  stateDir?: string;
  json?: boolean;
}

const out = (text: string) => process.stdout.write(text);

function describeToken(token: Token): string {
  const scope = token.scope.kind === "admin" ? "admin" : token.scope.kind === "app" ? `app ${token.scope.app}` : `env ${token.scope.app}/${token.scope.env}`;
  return `${token.id}  ${token.name.padEnd(16)} ${scope.padEnd(28)} created ${token.createdAt} by ${token.createdBy}${token.revokedAt ? `  REVOKED ${token.revokedAt}` : ""}`;
}

async function localAccess(options: Options) {
  const { plan, stateDir } = await openPlatform(options);
  const { AccessStore } = await import("../state/access.js");
  return { plan, stateDir, access: new AccessStore(stateDir) };
}

export function registerAccessCommands(cli: Command): void {
  const tokens = cli.command("tokens").description("API tokens: admin, or scoped to one app or one app environment").addHelpText(
    "after",
    `
Examples:
  berth tokens create ci-shop --app shop
  berth tokens create deployer --app shop --env staging
  berth tokens list
  berth tokens revoke 3f2a9c01d4e5`,
  );

  withSpecOptions(
    tokens
      .command("create")
      .description("Create a token; its value is printed once, on stdout")
      .argument("<name>", "a name for the token (who or what uses it)")
      .option("--admin", "an admin token (all apps, tokens, audit)")
      .option("--app <app>", "scope to this app")
      .option("--env <env>", "with --app: scope to this environment only")
      .option("--json", "print the token as JSON"),
  ).action(async (name: string, options: Options & { admin?: boolean; app?: string; env?: string }) => {
    if (options.admin && options.app) throw new BerthError("BAD_ARGUMENT", "use either --admin or --app, not both");
    if (!options.admin && !options.app) throw new BerthError("BAD_ARGUMENT", "tokens create needs --admin or --app APP [--env ENV]");
    if (options.env && !options.app) throw new BerthError("BAD_ARGUMENT", "--env needs --app");
    const scope: Scope = options.admin ? { kind: "admin" } : options.env ? { kind: "environment", app: options.app!, env: options.env } : { kind: "app", app: options.app! };
    const remote = await remoteOf(options);
    let created: Token & { token: string };
    if (remote) created = await call(remote, "POST", "/v1/tokens", { name, scope });
    else {
      if (!/^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/.test(name)) throw new BerthError("BAD_ARGUMENT", `token name ${name}: use letters, digits and . _ @ - (up to 64)`);
      const { plan, stateDir, access } = await localAccess(options);
      try {
        const made = await audited(stateDir, "createToken", (made) => `token:${made.token.id}`, () => {
          if (scope.kind !== "admin" && !plan.environments.some((e) => e.app === scope.app && (scope.kind === "app" || e.env === scope.env))) {
            throw new BerthError("NOT_FOUND", `no ${scope.kind === "app" ? `app ${scope.app}` : `environment ${scope.app}/${scope.env}`} in the spec`);
          }
          return access.createToken(name, scope, localActor());
        });
        created = { ...made.token, token: made.value };
      } finally {
        access.close();
      }
    }
    if (options.json) out(JSON.stringify(created, null, 2) + "\n");
    else {
      out(`${created.token}\n`);
      process.stderr.write(`token ${created.id} (${describeToken(created).split(/\s{2,}/)[2]}) created; this is the only time its value is shown\n`);
    }
  });

  withSpecOptions(tokens.command("list").description("List tokens (never their values)").option("--json", "print as JSON")).action(async (options: Options) => {
    const remote = await remoteOf(options);
    let list: Token[];
    if (remote) list = (await call<{ tokens: Token[] }>(remote, "GET", "/v1/tokens")).tokens;
    else {
      const { access } = await localAccess(options);
      list = access.tokens();
      access.close();
    }
    out(options.json ? JSON.stringify(list, null, 2) + "\n" : list.length === 0 ? "no tokens\n" : list.map(describeToken).join("\n") + "\n");
  });

  withSpecOptions(tokens.command("revoke").description("Revoke a token; it stops working at once").argument("<id>", "token id").option("--json", "print as JSON")).action(
    async (id: string, options: Options) => {
      if (!/^[0-9a-f]{12}$/.test(id)) throw new BerthError("BAD_ARGUMENT", `${id} is not a token id (12 hex digits, see berth tokens list)`);
      const remote = await remoteOf(options);
      let token: Token;
      if (remote) token = await call<Token>(remote, "DELETE", `/v1/tokens/${id}`);
      else {
        const { stateDir, access } = await localAccess(options);
        try {
          token = await audited(stateDir, "revokeToken", `token:${id}`, () => access.revokeToken(id));
        } finally {
          access.close();
        }
      }
      out(options.json ? JSON.stringify(token, null, 2) + "\n" : `revoked ${describeToken(token)}\n`);
    },
  );

  withSpecOptions(
    cli
      .command("audit")
      .description("Who changed what, when, from where, and how it ended — newest first")
      .option("--app <app>", "only this app's entries")
      .option("--limit <n>", "entries to show", "50")
      .option("--json", "print as JSON"),
  ).action(async (options: Options & { app?: string; limit: string }) => {
    const limit = Number(options.limit);
    if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw new BerthError("BAD_ARGUMENT", `--limit ${options.limit}: expected a whole number from 1 to 1000`);
    const remote = await remoteOf(options);
    let entries: AuditEntry[];
    if (remote) entries = (await call<{ entries: AuditEntry[] }>(remote, "GET", `/v1/audit?limit=${limit}${options.app ? `&app=${encodeURIComponent(options.app)}` : ""}`)).entries;
    else {
      const { access } = await localAccess(options);
      entries = access.auditLog({ ...(options.app ? { app: options.app } : {}), limit }).entries;
      access.close();
    }
    if (options.json) out(JSON.stringify(entries, null, 2) + "\n");
    else out(entries.map((e) => `${e.at}  ${e.actor.padEnd(16)} ${e.operation.padEnd(22)} ${e.target.padEnd(24)} ${String(e.status)} ${e.result.padEnd(7)} from ${e.source}`).join("\n") + (entries.length ? "\n" : "no entries\n"));
  });

  withSpecOptions(
    cli
      .command("logs")
      .description("The last log lines of an environment's containers")
      .argument("<app>", "app name")
      .option("--env <env>", "environment")
      .option("--component <name>", "only this component")
      .option("--lines <n>", "lines per container", "100")
      .option("--json", "print as JSON"),
  ).action(async (app: string, options: Options & { env?: string; component?: string; lines: string }) => {
    if (!options.env) throw new BerthError("BAD_ARGUMENT", "logs needs --env ENV", `For example: berth logs ${app} --env production`);
    const lines = Number(options.lines);
    if (!Number.isInteger(lines) || lines < 1 || lines > 5000) throw new BerthError("BAD_ARGUMENT", `--lines ${options.lines}: expected a whole number from 1 to 5000`);
    const remote = await remoteOf(options);
    let containers: { name: string; component: string; lines: string[] }[] = [];
    if (remote) {
      const query = `lines=${lines}${options.component ? `&component=${encodeURIComponent(options.component)}` : ""}`;
      containers = (await call<{ containers: typeof containers }>(remote, "GET", `/v1/apps/${app}/envs/${options.env}/logs?${query}`)).containers;
    } else {
      const { plan, deps } = await openPlatform(options);
      const { environmentOf } = await import("./heavy.js");
      const { logTail } = await import("../host/docker.js");
      const env = environmentOf(plan, app, options.env);
      for (const component of env.components.filter((c) => !options.component || c.name === options.component)) {
        for (const container of component.containers) {
          const text = await logTail(deps.docker, container.name, lines);
          containers.push({ name: container.name, component: component.name, lines: text === "" ? [] : text.split("\n") });
        }
      }
    }
    if (options.json) out(JSON.stringify(containers, null, 2) + "\n");
    else for (const container of containers) out(container.lines.map((line) => `${container.name} | ${line}`).join("\n") + (container.lines.length ? "\n" : ""));
  });

  withSpecOptions(cli.command("apps").description("The apps and their environments").option("--json", "print as JSON")).action(async (options: Options) => {
    const remote = await remoteOf(options);
    let apps: { name: string; environments: string[] }[];
    if (remote) apps = (await call<{ apps: typeof apps }>(remote, "GET", "/v1/apps")).apps;
    else {
      const { loadSpec } = await import("../spec/index.js");
      const { spec } = await loadSpec(options.spec ?? process.env.BERTH_SPEC ?? ".");
      apps = spec.apps.map((app) => ({ name: app.spec.name, environments: Object.keys(app.spec.environments) }));
    }
    out(options.json ? JSON.stringify(apps, null, 2) + "\n" : apps.map((a) => `${a.name.padEnd(20)} ${a.environments.join(", ")}`).join("\n") + "\n");
  });
}
