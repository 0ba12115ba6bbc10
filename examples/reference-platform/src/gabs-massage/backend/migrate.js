// Release command: brings the database schema up to date. Safe to run any number of
// times and from two deploys at once; exits non-zero (and changes nothing) on failure.
import { readFileSync } from "node:fs";
import { createPool, databaseSettings, migrate } from "./lib/db.js";
import { createLogger } from "./lib/log.js";
import { MIGRATIONS } from "./migrations.js";

const pkg = JSON.parse(readFileSync(new URL("./package.json", import.meta.url), "utf8"));

async function main(env) {
  const log = createLogger({ fields: { component: "migrate" } });
  let pool;
  try {
    pool = createPool(databaseSettings(env), `${pkg.name}-migrate`, log);
    const result = await migrate(pool, MIGRATIONS, log);
    log.info(result.applied.length > 0 ? "schema migrated" : "schema already up to date", result);
    return 0;
  } catch (err) {
    log.error(`migration failed: ${err.message}`);
    return 1;
  } finally {
    await pool?.end();
  }
}

process.exitCode = await main(process.env);
