// The berth CLI: the composition root for command-line use. Results go to stdout,
// progress and errors to stderr; exit codes come from the error catalogue.
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Command, CommanderError } from "commander";
import { BerthError, ERROR_CODES } from "../errors.js";
import { loadSpec } from "../spec/index.js";
import { jsonSchemas, specReference } from "../spec/jsonschema.js";
import { planPlatform } from "../plan/plan.js";
import { formatPlan } from "../plan/format.js";
import { openPlatform, registerDeployCommands } from "./deploy.js";
import { registerSecretsCommands } from "./secrets.js";
import { registerDbCommands } from "./db.js";
import { registerPlatformCommands } from "./platform.js";
import { registerAccessCommands } from "./access.js";

function program(): Command {
  const cli = new Command("berth")
    .description("Run many web apps, each with staging and production, on one server.")
    .showSuggestionAfterError(true)
    .exitOverride()
    .addHelpText(
      "after",
      `
Examples:
  berth validate examples/reference-platform
  berth plan examples/reference-platform --json
  berth apply examples/reference-platform
  berth deploy filter-ical --env staging --image backend=berth/filter-ical-backend:v2 --spec examples/reference-platform
  berth releases filter-ical --env staging --spec examples/reference-platform
  berth rollback filter-ical --env staging --spec examples/reference-platform
  berth down examples/reference-platform`,
    );

  cli
    .command("validate")
    .description("Check a spec directory (platform.yaml + apps/*.yaml); print every problem")
    .argument("<path>", "spec directory or platform.yaml")
    .option("--json", "print the normalised spec as JSON")
    .action(async (path: string, options: { json?: boolean }) => {
      const { spec } = await loadSpec(path);
      if (options.json) process.stdout.write(JSON.stringify(spec, null, 2) + "\n");
      else {
        const environments = spec.apps.reduce((sum, app) => sum + Object.keys(app.spec.environments).length, 0);
        process.stdout.write(`valid: platform ${spec.platform.name}, ${spec.apps.length} apps, ${environments} environments\n`);
      }
    });

  cli
    .command("plan")
    .description("Show the desired state the spec asks for: networks, containers, routes, databases")
    .argument("<path>", "spec directory or platform.yaml")
    .option("--json", "print the plan as JSON")
    .action(async (path: string, options: { json?: boolean }) => {
      const { root, spec } = await loadSpec(path);
      const plan = planPlatform(spec, { root });
      process.stdout.write(options.json ? JSON.stringify(plan, null, 2) + "\n" : formatPlan(plan, root));
    });

  cli
    .command("schema")
    .description("Write the JSON Schemas of the platform and app files (for editors), and the spec reference")
    .option("--out <dir>", "directory for platform.schema.json and app.schema.json")
    .option("--docs <file>", "write the Markdown spec reference to this file")
    .action(async (options: { out?: string; docs?: string }) => {
      const schemas = jsonSchemas();
      if (!options.out && !options.docs) {
        process.stdout.write(JSON.stringify(schemas, null, 2) + "\n");
        return;
      }
      if (options.out) {
        await mkdir(options.out, { recursive: true });
        await writeFile(join(options.out, "platform.schema.json"), JSON.stringify(schemas.platform, null, 2) + "\n");
        await writeFile(join(options.out, "app.schema.json"), JSON.stringify(schemas.app, null, 2) + "\n");
      }
      if (options.docs) await writeFile(options.docs, specReference());
    });

  registerPlatformCommands(cli);
  registerDeployCommands(cli);
  registerSecretsCommands(cli, openPlatform);
  registerDbCommands(cli, openPlatform);
  registerAccessCommands(cli);
  return cli;
}

function exitCodeFor(error: unknown): number {
  if (error instanceof BerthError) return ERROR_CODES[error.code].exit;
  return ERROR_CODES.INTERNAL.exit;
}

export async function main(argv: string[]): Promise<number> {
  try {
    await program().parseAsync(argv, { from: "user" });
    return 0;
  } catch (error) {
    if (error instanceof CommanderError) {
      // Commander already printed its message (unknown command, missing argument, --help).
      return error.exitCode === 0 ? 0 : ERROR_CODES.BAD_ARGUMENT.exit;
    }
    if (error instanceof BerthError) {
      process.stderr.write(`error: ${error.message}\n`);
      if (error.hint) process.stderr.write(`${error.hint}\n`);
    } else {
      process.stderr.write(`internal error: ${(error as Error).stack ?? String(error)}\n`);
    }
    return exitCodeFor(error);
  }
}

process.exitCode = await main(process.argv.slice(2));
