// Secrets commands: set, unset, list, rotate-key, retire-keys. Values are read from the command line
// (KEY=VALUE) or from stdin (KEY alone), and are never printed: every output names secrets,
// versions and dates only.
import type { Command } from "commander";
import { BerthError } from "../errors.js";
import type { PlatformPlan } from "../plan/types.js";
import { KEY_FILE_ENV, secretsKeyPath } from "../secrets/keys.js";
import { MAX_VALUE_BYTES, SecretStore, secretNameProblem, type SecretInfo, type SecretsChange } from "../secrets/store.js";
import { audited } from "./audit.js";
import { call, remoteOf } from "./remote.js";

/** The options every secrets command passes to `open`. */
export interface SecretsSpecOptions {
  spec?: string;
  stateDir?: string;
}

/** Finds the spec and the state directory; `openPlatform` of ./deploy.ts fits. */
export type OpenPlatform = (options: SecretsSpecOptions) => Promise<{ plan: PlatformPlan; stateDir: string }>;

/** The streams the commands use; main.ts passes none (the process's own), tests their own. */
export interface SecretsIo {
  stdin: NodeJS.ReadableStream & { isTTY?: boolean; setRawMode?: (mode: boolean) => unknown };
  stdout: { write(text: string): unknown };
  stderr: { write(text: string): unknown };
}

interface SecretsOptions extends SecretsSpecOptions {
  host?: string;
  env?: string;
  json?: boolean;
  secretsKey?: string;
}

function requireEnv(options: SecretsOptions, command: string): string {
  if (!options.env) throw new BerthError("BAD_ARGUMENT", `secrets ${command} needs --env ENV`, `For example: berth secrets ${command} APP --env staging`);
  return options.env;
}

function checkEnvironment(plan: PlatformPlan, app: string, env: string): void {
  if (plan.environments.some((e) => e.app === app && e.env === env)) return;
  const known = plan.environments.map((e) => `${e.app}/${e.env}`).join(", ");
  throw new BerthError("NOT_FOUND", `no environment ${app}/${env} in the spec`, `Known environments: ${known}.`);
}

/** Opens the platform and its secret store; the caller closes the store. */
async function openSecrets(open: OpenPlatform, options: SecretsOptions): Promise<{ plan: PlatformPlan; stateDir: string; secrets: SecretStore }> {
  const { plan, stateDir } = await open(options);
  return { plan, stateDir, secrets: new SecretStore(stateDir, { keyPath: secretsKeyPath(plan.platform, options.secretsKey) }) };
}

/** `KEY=VALUE` pairs, or one bare `KEY` whose value comes from stdin. Never quotes a value. */
function parseAssignments(args: string[]): { values: Map<string, string>; fromStdin?: string } {
  const values = new Map<string, string>();
  let fromStdin: string | undefined;
  args.forEach((arg, index) => {
    const equals = arg.indexOf("=");
    const name = equals === -1 ? arg : arg.slice(0, equals);
    const problem = secretNameProblem(name);
    if (problem) throw new BerthError("BAD_ARGUMENT", `argument ${index + 1}: ${problem}`, "Nothing was changed.");
    if (values.has(name) || fromStdin === name) throw new BerthError("BAD_ARGUMENT", `secret ${name} is given twice`, "Nothing was changed.");
    if (equals !== -1) values.set(name, arg.slice(equals + 1));
    else if (fromStdin === undefined) fromStdin = name;
    else throw new BerthError("BAD_ARGUMENT", `both ${fromStdin} and ${name} have no =VALUE, but stdin carries one value`, "Set one secret from stdin per command, or give the others as KEY=VALUE.");
  });
  return fromStdin === undefined ? { values } : { values, fromStdin };
}

/** The whole of stdin as UTF-8, less one trailing line break (the one `echo` adds). */
async function readPipedValue(stdin: SecretsIo["stdin"], name: string): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const data of stdin as AsyncIterable<Buffer | string>) {
    const chunk = typeof data === "string" ? Buffer.from(data, "utf8") : data;
    size += chunk.length;
    // +2: a value of exactly the limit may still be followed by "\r\n".
    if (size > MAX_VALUE_BYTES + 2) throw new BerthError("BAD_ARGUMENT", `secret ${name}: the value on stdin is over ${MAX_VALUE_BYTES} bytes (64 KiB)`, "Nothing was changed.");
    chunks.push(chunk);
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(Buffer.concat(chunks));
  } catch {
    throw new BerthError("BAD_ARGUMENT", `secret ${name}: the value on stdin is not UTF-8 text`, "Nothing was changed. Encode binary values, e.g. with base64.");
  }
  text = text.replace(/\r?\n$/, "");
  if (text === "") {
    throw new BerthError("BAD_ARGUMENT", `secret ${name}: no value on stdin`, `Pipe it in, e.g.: printf '%s' "$VALUE" | berth secrets set APP --env ENV ${name}`);
  }
  return text;
}

/** One line typed at the terminal, not echoed. */
function promptHidden(io: SecretsIo, name: string): Promise<string> {
  const { stdin, stderr } = io;
  stderr.write(`Value for ${name} (not shown, Enter to finish): `);
  return new Promise((resolve, reject) => {
    let value = "";
    const finish = (outcome: () => void) => {
      stdin.off("data", onData);
      stdin.setRawMode?.(false);
      stdin.pause();
      stderr.write("\n");
      outcome();
    };
    const onData = (chunk: Buffer) => {
      for (const char of chunk.toString("utf8")) {
        if (char === "\r" || char === "\n" || char === "\u0004") return finish(() => resolve(value));
        if (char === "\u0003") return finish(() => reject(new BerthError("BAD_ARGUMENT", `secrets set cancelled; ${name} was not changed`)));
        if (char === "\u007f" || char === "\b") value = [...value].slice(0, -1).join("");
        else value += char;
      }
    };
    stdin.setRawMode?.(true);
    stdin.on("data", onData);
    stdin.resume();
  });
}

async function readValue(io: SecretsIo, name: string): Promise<string> {
  if (!io.stdin.isTTY) return readPipedValue(io.stdin, name);
  const value = await promptHidden(io, name);
  if (value === "") throw new BerthError("BAD_ARGUMENT", `secret ${name}: no value typed`, "Nothing was changed.");
  return value;
}

function describeChange(app: string, env: string, verb: string, change: SecretsChange): string {
  const names = change.changed.map((secret) => `${secret.name} (v${secret.version})`).join(", ");
  return `${app}/${env}: ${verb} ${names}; secrets version ${change.version}\n`;
}

/** The options of every secrets command; `isRemote` adds --host (key rotation runs on the server only). */
function withSecretsOptions(command: Command, isRemote = false): Command {
  if (isRemote) command.option("--host <url>", "a remote berthd (default BERTH_HOST, or host: in ~/.config/berth/config.yaml)");
  return command
    .option("--spec <path>", "spec directory (default BERTH_SPEC, or the current directory)")
    .option("--state-dir <dir>", "state directory (default /var/lib/berth/PLATFORM, or BERTH_STATE_DIR)")
    .option("--secrets-key <file>", `key file, kept apart from the state (default ${KEY_FILE_ENV}, or /etc/berth/PLATFORM/secrets.key)`);
}

/** Registers `berth secrets set|unset|list|rotate-key|retire-keys`. */
export function registerSecretsCommands(cli: Command, open: OpenPlatform, io: SecretsIo = process): void {
  const { stdout, stderr } = io;
  const secrets = cli
    .command("secrets")
    .description("Encrypted, versioned secrets of an app environment, injected at deploy")
    .addHelpText(
      "after",
      `
Examples:
  printf '%s' "$STRIPE_KEY" | berth secrets set shop --env production STRIPE_KEY
  berth secrets set shop --env staging LOG_LEVEL=debug FEATURE_FLAGS=beta
  berth secrets list shop --env production
  berth secrets unset shop --env staging FEATURE_FLAGS
  berth secrets rotate-key && berth secrets retire-keys`,
    );

  withSecretsOptions(
    secrets
      .command("set")
      .description("Set secrets: KEY=VALUE, or KEY alone to read its value from stdin (keeps it off the command line and out of shell history)")
      .argument("<app>", "app name")
      .argument("<secrets...>", "KEY=VALUE pairs, or one KEY whose value is read from stdin (one trailing line break dropped)")
      .option("--env <env>", "environment, e.g. staging")
      .option("--json", "print the change as JSON"),
    true,
  ).action(async (app: string, args: string[], options: SecretsOptions) => {
    const env = requireEnv(options, "set");
    const { values, fromStdin } = parseAssignments(args);
    const remote = await remoteOf(options);
    if (remote) {
      if (fromStdin !== undefined) values.set(fromStdin, await readValue(io, fromStdin));
      const set: SecretInfo[] = [];
      for (const [name, value] of values) set.push(await call<SecretInfo>(remote, "PUT", `/v1/apps/${app}/envs/${env}/secrets/${name}`, { value }));
      stdout.write(options.json ? JSON.stringify({ app, env, secrets: set }, null, 2) + "\n" : `${app}/${env}: set ${set.map((i) => `${i.name} (v${i.version})`).join(", ")}\n`);
      return;
    }
    const { plan, stateDir } = await open(options);
    checkEnvironment(plan, app, env);
    if (fromStdin !== undefined) values.set(fromStdin, await readValue(io, fromStdin));
    const store = new SecretStore(stateDir, { keyPath: secretsKeyPath(plan.platform, options.secretsKey) });
    try {
      const change = await audited(stateDir, "setSecret", `${app}/${env}`, () => store.setMany(app, env, Object.fromEntries(values)));
      stdout.write(options.json ? JSON.stringify({ app, env, ...change }, null, 2) + "\n" : describeChange(app, env, "set", change));
      if (!options.json) stderr.write(`Deploy to use them: berth deploy ${app} --env ${env}\n`);
    } finally {
      store.close();
    }
  });

  withSecretsOptions(
    secrets
      .command("unset")
      .description("Remove secrets (their history stays, for releases made with them)")
      .argument("<app>", "app name")
      .argument("<names...>", "secret names")
      .option("--env <env>", "environment, e.g. staging")
      .option("--json", "print the change as JSON"),
    true,
  ).action(async (app: string, names: string[], options: SecretsOptions) => {
    const env = requireEnv(options, "unset");
    const remote = await remoteOf(options);
    if (remote) {
      const unset: SecretInfo[] = [];
      for (const name of names) unset.push(await call<SecretInfo>(remote, "DELETE", `/v1/apps/${app}/envs/${env}/secrets/${name}`));
      stdout.write(options.json ? JSON.stringify({ app, env, secrets: unset }, null, 2) + "\n" : `${app}/${env}: unset ${unset.map((i) => `${i.name} (v${i.version})`).join(", ")}\n`);
      return;
    }
    const { plan, stateDir, secrets: store } = await openSecrets(open, options);
    try {
      checkEnvironment(plan, app, env);
      const change = await audited(stateDir, "unsetSecret", `${app}/${env}`, () => store.unsetMany(app, env, names));
      stdout.write(options.json ? JSON.stringify({ app, env, ...change }, null, 2) + "\n" : describeChange(app, env, "unset", change));
      if (!options.json) stderr.write(`Deploy to drop them from the running containers: berth deploy ${app} --env ${env}\n`);
    } finally {
      store.close();
    }
  });

  withSecretsOptions(
    secrets
      .command("list")
      .description("List an environment's secrets: names, versions and dates, never values")
      .argument("<app>", "app name")
      .option("--env <env>", "environment, e.g. staging")
      .option("--json", "print as JSON"),
    true,
  ).action(async (app: string, options: SecretsOptions) => {
    const env = requireEnv(options, "list");
    const remote = await remoteOf(options);
    const { plan, secrets: store } = remote ? { plan: undefined, secrets: undefined } : await openSecrets(open, options);
    try {
      if (plan) checkEnvironment(plan, app, env);
      const list = store ? store.list(app, env) : (await call<{ secrets: SecretInfo[] }>(remote!, "GET", `/v1/apps/${app}/envs/${env}/secrets`)).secrets;
      if (options.json) {
        stdout.write(JSON.stringify({ app, env, ...(store ? { version: store.version(app, env) } : {}), secrets: list }, null, 2) + "\n");
      } else if (list.length === 0) {
        stdout.write(`${app}/${env}: no secrets\n`);
      } else {
        const width = Math.max(4, ...list.map((secret) => secret.name.length));
        const lines = list.map((secret) => `${secret.name.padEnd(width)}  ${`v${secret.version}`.padEnd(7)}  ${secret.updatedAt}`);
        stdout.write([`${"NAME".padEnd(width)}  VERSION  UPDATED`, ...lines].join("\n") + "\n");
      }
    } finally {
      store?.close();
    }
  });

  withSecretsOptions(
    secrets
      .command("rotate-key")
      .description("Make a new key version current and re-wrap every secret's data key under it (values unchanged)")
      .option("--json", "print the outcome as JSON"),
  ).action(async (options: SecretsOptions) => {
    const { stateDir, secrets: store } = await openSecrets(open, options);
    try {
      const rotation = await audited(stateDir, "rotateSecretsKey", "platform", () => store.rotateKey());
      if (options.json) {
        stdout.write(JSON.stringify({ keyFile: store.keyPath, ...rotation }, null, 2) + "\n");
        return;
      }
      stdout.write(`key version ${rotation.kekVersion} is current in ${store.keyPath}; re-wrapped ${rotation.rewrapped} data keys\n`);
      if (rotation.unusedVersions.length > 0) {
        stderr.write(
          `Key versions ${rotation.unusedVersions.join(", ")} are no longer used. Keep them while older backups of berth.db may need restoring; then drop them with: berth secrets retire-keys\n`,
        );
      }
      stderr.write("Back up the key file now: without it no secret can be decrypted.\n");
    } finally {
      store.close();
    }
  });

  withSecretsOptions(
    secrets
      .command("retire-keys")
      .description("Drop from the key file the key versions that no stored secret uses (after rotate-key)")
      .option("--json", "print the retired versions as JSON"),
  ).action(async (options: SecretsOptions) => {
    const { stateDir, secrets: store } = await openSecrets(open, options);
    try {
      const retired = await audited(stateDir, "retireSecretsKeys", "platform", () => store.retireKeys());
      if (options.json) stdout.write(JSON.stringify({ keyFile: store.keyPath, retiredVersions: retired }, null, 2) + "\n");
      else stdout.write(retired.length === 0 ? `no unused key versions in ${store.keyPath}\n` : `retired key versions ${retired.join(", ")} from ${store.keyPath}\n`);
    } finally {
      store.close();
    }
  });
}
