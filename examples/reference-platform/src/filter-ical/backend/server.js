// Entry point: checks the environment, wires the database pool and the routes together,
// serves on PORT and shuts down gracefully on SIGTERM.
import { readFileSync } from "node:fs";
import http from "node:http";
import { createPool, databaseSettings } from "./lib/db.js";
import { closeGracefully, createRequestListener, withTimeout } from "./lib/http.js";
import { createLogger } from "./lib/log.js";
import { createRoutes } from "./routes.js";

const pkg = JSON.parse(readFileSync(new URL("./package.json", import.meta.url), "utf8"));

function wholeNumber(env, name, fallback, min, max) {
  const raw = env[name];
  const value = raw === undefined || raw === "" ? fallback : Number(raw);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new Error(`${name}: expected a whole number ${min}-${max}, got "${raw}".`);
  }
  return value;
}

/** Everything this process reads from its environment, checked before it starts. */
function readConfig(env) {
  return {
    log: createLogger({ level: env.LOG_LEVEL || "info" }),
    port: wholeNumber(env, "PORT", 3000, 1, 65535),
    shutdownTimeoutMs: wholeNumber(env, "SHUTDOWN_TIMEOUT_MS", 4000, 0, 600_000),
    database: databaseSettings(env),
  };
}

function main(env) {
  let config;
  try {
    config = readConfig(env);
  } catch (err) {
    createLogger().error(`configuration: ${err.message}`);
    process.exit(1);
  }
  const { log, port, shutdownTimeoutMs } = config;
  const pool = createPool(config.database, pkg.name, log);
  const version = { name: pkg.name, version: env.APP_VERSION || pkg.version, node: process.version };

  let draining = false;
  const isDraining = () => draining;
  const routes = createRoutes({ db: pool, version, isDraining });
  const server = http.createServer(createRequestListener({ routes, log, isDraining }));
  // Longer than a proxy's idle keep-alive (nginx: 60 s), so the proxy closes idle
  // upstream connections first and never sends a request into one being closed here.
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 66_000;

  server.listen(port, () => log.info("listening", { port, version: version.version }));
  server.on("error", (err) => {
    log.error("server failed", { error: err.message });
    process.exit(1);
  });

  async function shutdown(signal) {
    if (draining) return;
    draining = true;
    log.info("shutting down: finishing in-flight requests", { signal });
    let code = 0;
    try {
      await closeGracefully(server, shutdownTimeoutMs);
    } catch (err) {
      log.warn("closing connections that did not finish", { error: err.message });
      server.closeAllConnections();
      code = 1;
    }
    // A query stuck on an unresponsive database would hold pool.end() forever.
    await withTimeout(pool.end(), 1000, "closing the database pool").catch((err) => {
      log.warn("database pool not closed cleanly", { error: err.message });
      code = 1;
    });
    log.info("stopped", { exit_code: code });
    process.exit(code);
  }
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
  process.on("SIGINT", () => void shutdown("SIGINT"));
}

main(process.env);
