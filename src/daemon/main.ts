// berthd: the control-plane daemon. It owns the state, serves the API over TLS and runs
// the reconcile loop. SIGTERM/SIGINT stop it cleanly: no new requests, the loop ends,
// running operations get a grace period, and their journals let the next start finish
// or undo what they left.
import { execFile } from "node:child_process";
import { chmod, mkdir, readFile, stat, writeFile } from "node:fs/promises";
import { hostname } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { Command } from "commander";
import { pino } from "pino";
import { compileContract } from "../api/contract.js";
import { createHandlers } from "../api/handlers.js";
import { problem } from "../api/problem.js";
import { createApiServer } from "../api/server.js";
import { BerthError, ERROR_CODES } from "../errors.js";
import type { Release } from "../state/store.js";
import { Control } from "./control.js";

const run = promisify(execFile);

export const DEFAULT_LISTEN = "127.0.0.1:8770";

/** The API's certificate: self-signed (EC P-256) for localhost, 127.0.0.1, the host name and the listen address, unless given. */
async function apiCertificate(dir: string, listenHost: string): Promise<{ cert: string; key: string; certPath: string }> {
  const certPath = join(dir, "cert.pem");
  const keyPath = join(dir, "key.pem");
  if (!(await stat(certPath).then(() => true, () => false))) {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const ips = new Set(["127.0.0.1", ...(/^\d+(\.\d+){3}$/.test(listenHost) && listenHost !== "0.0.0.0" ? [listenHost] : [])]);
    const names = new Set(["localhost", hostname()]);
    const san = [...[...names].map((n) => `DNS:${n}`), ...[...ips].map((ip) => `IP:${ip}`)].join(",");
    await run("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "825", "-subj", "/CN=berthd", "-addext", `subjectAltName=${san}`, "-keyout", keyPath, "-out", certPath]);
    await chmod(keyPath, 0o600);
  }
  return { cert: await readFile(certPath, "utf8"), key: await readFile(keyPath, "utf8"), certPath };
}

export async function startDaemon(argv: string[]): Promise<void> {
  const options = new Command("berthd")
    .description("berth's control plane: API, state and reconcile loop")
    .option("--spec <path>", "spec directory (default BERTH_SPEC)")
    .option("--state-dir <dir>", "state directory (default BERTH_STATE_DIR, or /var/lib/berth/PLATFORM)")
    .option("--listen <host:port>", `API address (default BERTH_LISTEN, or ${DEFAULT_LISTEN})`)
    .option("--tls-cert <file>", "API certificate (default: a self-signed one in STATE_DIR/api)")
    .option("--tls-key <file>", "API certificate's key")
    .option("--no-reconcile", "serve the API without the reconcile loop")
    .parse(argv, { from: "user" })
    .opts<{ spec?: string; stateDir?: string; listen?: string; tlsCert?: string; tlsKey?: string; reconcile: boolean }>();

  const log = pino({ base: { service: "berthd" }, timestamp: pino.stdTimeFunctions.isoTime, level: process.env.BERTH_LOG_LEVEL ?? "info" });
  const specPath = options.spec ?? process.env.BERTH_SPEC;
  if (!specPath) throw new BerthError("BAD_ARGUMENT", "berthd needs the spec: --spec PATH or BERTH_SPEC");
  const control = await Control.open(specPath, { stateDir: options.stateDir ?? process.env.BERTH_STATE_DIR, log });
  const listen = options.listen ?? process.env.BERTH_LISTEN ?? DEFAULT_LISTEN;
  const match = /^(.+):(\d{1,5})$/.exec(listen);
  if (!match) throw new BerthError("BAD_ARGUMENT", `--listen ${listen}: expected HOST:PORT, like 127.0.0.1:8770`);
  const [, host, port] = match as unknown as [string, string, string];

  // Work a previous berthd left half-done: the deploy journal says what to undo or finish.
  const recovered = control.store.locks().length > 0 ? await control.jobs.run<Release[]>({ kind: "recover" }, (line) => log.info(line)) : [];
  const interrupted = control.operations.markInterrupted(problem(500, "interrupted", "berthd stopped during this operation; its deploy was repaired from the journal at the next start"));
  if (recovered.length > 0 || interrupted > 0) log.warn({ recovered: recovered.map((r) => `${r.app}/${r.env} r${r.number}: ${r.status}`), interrupted }, "resumed journaled work");

  if (!control.access.hasAdminToken()) {
    const { token, value } = control.access.createToken("admin", { kind: "admin" }, "berthd");
    const file = join(control.stateDir, "admin.token");
    await writeFile(file, value + "\n", { mode: 0o600 });
    log.warn({ tokenId: token.id, file }, "created the first admin token; it is in this file (mode 0600)");
  }

  const tls = options.tlsCert && options.tlsKey
    ? { cert: await readFile(options.tlsCert, "utf8"), key: await readFile(options.tlsKey, "utf8"), certPath: options.tlsCert }
    : await apiCertificate(join(control.stateDir, "api"), host);
  const server = createApiServer({ contract: compileContract(control.contractDocument), handlers: createHandlers(control), access: control.access, log, tls });
  await new Promise<void>((resolve, reject) => {
    server.once("error", (error: NodeJS.ErrnoException) =>
      reject(error.code === "EADDRINUSE" ? new BerthError("PORT_TAKEN", `berthd cannot listen on ${listen}: the address is in use`) : error),
    );
    server.listen(Number(port), host, resolve);
  });
  log.info({ listen, certificate: tls.certPath, platform: control.plan.platform, stateDir: control.stateDir }, "berthd is serving");

  const stop = new AbortController();
  const watching = options.reconcile
    ? (async () => {
        // The first pass runs inside the loop, so a failure there is retried like any other.
        await control.watch(stop.signal, { initial: "berthd start" });
      })().catch((error: unknown) => log.error({ err: error }, "the reconcile loop stopped"))
    : Promise.resolve();

  await new Promise<void>((resolve) => {
    const shutdown = (signal: string) => {
      log.info({ signal }, "stopping");
      resolve();
    };
    process.once("SIGTERM", () => shutdown("SIGTERM"));
    process.once("SIGINT", () => shutdown("SIGINT"));
  });
  stop.abort();
  server.close();
  server.closeAllConnections();
  // Running deploys get a grace period; one still running after it is left to the journal.
  const grace = Date.now() + 20_000;
  while (control.jobs.running > 0 && Date.now() < grace) await new Promise((r) => setTimeout(r, 100));
  control.jobs.abandon();
  await Promise.race([watching, new Promise((r) => setTimeout(r, 20_000))]);
  control.close();
  log.info("stopped");
}

try {
  await startDaemon(process.argv.slice(2));
} catch (error) {
  if (error instanceof BerthError) {
    process.stderr.write(`berthd: ${error.message}\n${error.hint ? `${error.hint}\n` : ""}`);
    process.exitCode = ERROR_CODES[error.code].exit;
  } else {
    process.stderr.write(`berthd: ${(error as Error).stack ?? String(error)}\n`);
    process.exitCode = ERROR_CODES.INTERNAL.exit;
  }
}
