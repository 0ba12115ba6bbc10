// What a proxied request costs the proxy's CPU, counted rather than timed: user-space
// instructions per request (valgrind's callgrind) of a minimal hand-written nginx, of hand-written
// ones giving every request what a platform proxy must (without and with the least Lua routing)
// and all berth's proxy gives, of berth's rendered proxy configuration, of berth's configuration
// cut to the required duties with its router kept, and of berth's configuration with one feature
// taken out at a time. Wall-clock throughput on a small VM moves by ±10% between runs;
// instruction counts move by less than 1%, so this bench says where the proxy's CPU goes, which
// proxy-throughput.ts cannot. Every target is the host's nginx, one process, on 127.0.0.1, in front of a second
// host nginx serving a 3-byte file. Prints figures; asserts nothing about them.
//
//   npx tsx bench/proxy-cost.ts              # ~2 min
//   WRK_DURATION=2s npx tsx bench/proxy-cost.ts
import { spawn, type ChildProcess } from "node:child_process";
import { accessSync, constants, existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer, type AddressInfo, type Server } from "node:net";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { configFiles } from "../src/proxy/render.js";
import { BACKENDS_UPSTREAM, LUA_MODULES } from "../src/proxy/nginx-conf.js";
import {
  BENCH_APP,
  BENCH_DOMAIN,
  BENCH_PATH,
  BENCH_PLATFORM,
  BENCH_SITE,
  benchUpstream,
  handWrittenNginxConf,
  minimalNginxConf,
  requiredDutiesEdits,
  writeBerthGeneration,
  type Edit,
} from "./proxy-lib.js";
import { hostLoad, httpStatus, mustRun, parseWrk, planFromTexts, printTable, runCommand, waitUntil, type WrkResult } from "./lib.js";

const NGINX = "/usr/sbin/nginx";
const DURATION = process.env.WRK_DURATION ?? "3s";
/** Before any count: LuaJIT compiles the router, upstream connections open, memory pools grow. */
const WARMUP = "2s";
/** Under strace, nginx makes its calls at a few thousand requests/s: 2 s is plenty. */
const STRACE_DURATION = "2s";
/**
 * Four connections keep the one nginx process busy: under callgrind it is ~50× slower, so more
 * would only queue. wrk's count misses at most the 4 requests in flight when counting stops.
 */
const WRK_ARGS = ["-t1", "-c4", "--latency"];
/** One process, in the foreground: callgrind and strace follow it, and it is stopped by its pid. */
const SINGLE_PROCESS = "daemon off; master_process off;";
/** valgrind starts nginx (and LuaJIT) ~50× slower than natively. */
const START_TIMEOUT_MS = 60_000;
/** callgrind writes its last profile as nginx exits. */
const STOP_TIMEOUT_MS = 30_000;

/**
 * berth's configuration with the router taken out: the site names the upstream and its rate-limit
 * class, nginx.conf the backend's address, as a configuration rendered without routes-as-data
 * would. Logs, headers, request ids (still the router's Lua) and limits stay.
 */
function fixedRouteEdits(upstream: string, backend: string): Edit[] {
  return [
    {
      file: configFiles.nginxConf,
      pattern: new RegExp(`upstream ${BACKENDS_UPSTREAM} \\{[^}]*\\{[^}]*\\}[^}]*\\}`),
      replacement: `upstream ${BACKENDS_UPSTREAM} { server ${backend}; keepalive 256; }`,
    },
    {
      file: BENCH_SITE,
      pattern: /set_by_lua_block \$berth_upstream \{[^}]*\}/,
      replacement: `set $berth_upstream ${upstream};\n        set $berth_route_limit general;`,
    },
  ];
}

/**
 * The backend: not what is measured, so the fastest thing at hand. keepalive_requests is raised
 * so the proxies' upstream connections are never closed under them (nginx's default closes one
 * after 1000 requests), which would add reconnects to their counts.
 */
function backendConf(dir: string, port: number): string {
  return `worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 100000;
  server { listen 127.0.0.1:${port}; root ${dir}/www; }
}
`;
}

interface Target {
  name: string;
  what: string;
  /** Writes the target's configuration into `dir` (its own temp dir); returns its main file. */
  write(dir: string): Promise<string>;
}

interface Measured {
  target: Target;
  requests: number;
  instructionsPerRequest: number;
  /** Calls per request by system call name, from a run without valgrind; undefined without strace. */
  syscalls?: Map<string, number>;
}

/** What changes berth's rendered generation into one the host's nginx runs as a single process on 127.0.0.1:port. */
function hostEdits(port: number): Edit[] {
  return [
    { file: configFiles.nginxConf, pattern: /^worker_processes auto;$/m, replacement: "worker_processes 1;" },
    { file: configFiles.nginxConf, pattern: /listen 80 default_server;/, replacement: `listen 127.0.0.1:${port} default_server;` },
    { file: configFiles.nginxConf, pattern: /^[ \t]*listen 443 [^\n]*;\n/m, replacement: "" },
    { file: configFiles.generation, pattern: /listen 80;/, replacement: `listen 127.0.0.1:${port};` },
    { file: BENCH_SITE, pattern: /listen 80;/, replacement: `listen 127.0.0.1:${port};` },
  ];
}

/** Each removes one feature from berth's configuration; the rest stays as rendered. */
function ablations(backend: string, upstream: string): { name: string; what: string; edits: Edit[] }[] {
  const generatedId = /^[ \t]*set_by_lua_block \$berth_generated_id \{[^}]*\}\n/m;
  return [
    {
      name: "nolog",
      what: "access log off",
      edits: [{ file: configFiles.nginxConf, pattern: /access_log \S+ berth_json [^;]*;/, replacement: "access_log off;" }],
    },
    {
      name: "nolimit",
      what: "no rate limit (limit_req line removed)",
      edits: [{ file: BENCH_SITE, pattern: /^[ \t]*limit_req zone=general[^;]*;\n/m, replacement: "" }],
    },
    {
      name: "noaddh",
      what: "no response headers (add_header removed)",
      edits: [{ file: BENCH_SITE, pattern: /^[ \t]*add_header [^\n]*;\n/gm, replacement: "" }],
    },
    {
      name: "fewpsh",
      what: "proxy_set_header Host and Connection only",
      edits: [{ file: configFiles.nginxConf, pattern: /^[ \t]*proxy_set_header (?!Host |Connection )[^\n]*;\n/gm, replacement: "" }],
    },
    {
      // The site names the upstream and its limit class, nginx.conf the backend's address.
      // Request ids still come from the router's Lua.
      name: "nolua",
      what: "route fixed in the config, no Lua router",
      edits: fixedRouteEdits(upstream, backend),
    },
    {
      name: "oldid",
      what: "request id from nginx's $request_id",
      // With no server setting the router's id, every request gets the map's: nginx's $request_id.
      edits: [
        { file: configFiles.nginxConf, pattern: generatedId, replacement: "" },
        { file: BENCH_SITE, pattern: generatedId, replacement: "" },
      ],
    },
    {
      name: "nogzip",
      what: "gzip off",
      edits: [{ file: configFiles.nginxConf, pattern: /\bgzip on;/, replacement: "gzip off;" }],
    },
  ];
}

function targets(port: number, backend: string): Target[] {
  const plan = planFromTexts(BENCH_PLATFORM, { benchtp: BENCH_APP });
  const berth = (name: string, what: string, edits: Edit[]): Target => ({
    name,
    what,
    write: async (dir) => join((await writeBerthGeneration(dir, { backend, edits: [...hostEdits(port), ...edits], target: name })).live, configFiles.nginxConf),
  });
  const handWritten = (name: string, what: string, conf: (dir: string) => string): Target => ({
    name,
    what,
    write: async (dir) => {
      await writeFile(join(dir, "nginx.conf"), conf(dir));
      return join(dir, "nginx.conf");
    },
  });
  const options = (dir: string) => ({ listen: `127.0.0.1:${port}`, backend, pid: `${dir}/nginx.pid`, accessLog: `${dir}/access.log` });
  return [
    handWritten("minimal", "hand-written nginx", (dir) => minimalNginxConf(options(dir))),
    handWritten("required", "hand-written nginx, required duties", (dir) => handWrittenNginxConf("required", options(dir))),
    handWritten("required+lua", "hand-written nginx, required duties, least Lua routing", (dir) => handWrittenNginxConf("required+lua", options(dir))),
    handWritten("features", "hand-written nginx, berth's features", (dir) => handWrittenNginxConf("berth", options(dir))),
    berth("required+router", "berth's configuration cut to the required duties, router kept", requiredDutiesEdits()),
    berth("berth", "berth's rendered configuration", []),
    ...ablations(backend, benchUpstream(plan)).map(({ name, what, edits }) => berth(name, `berth, ${what}`, edits)),
  ];
}

/** A process this bench started: stopped by its pid, never by name. */
interface Started {
  child: ChildProcess;
  exited: Promise<void>;
  /** The last 64 KiB of what it wrote to stderr. */
  stderr(): string;
}

const running = new Set<Started>();

function start(file: string, args: string[]): Started {
  const child = spawn(file, args, { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr!.on("data", (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-65_536)));
  const exited = new Promise<void>((resolve) => {
    child.once("close", () => resolve());
    child.once("error", (error) => {
      stderr += `\n${error.message}`;
      resolve();
    });
  });
  const started = { child, exited, stderr: () => stderr };
  running.add(started);
  return started;
}

const hasExited = ({ child }: Started) => child.exitCode !== null || child.signalCode !== null;

/** Sends `signal` (nginx: SIGQUIT, a graceful stop; strace: SIGTERM, which prints its counts) and waits; SIGKILL after STOP_TIMEOUT_MS. */
async function stop(started: Started, signal: NodeJS.Signals): Promise<void> {
  if (!hasExited(started)) {
    started.child.kill(signal);
    const timer = new Promise<"late">((resolve) => setTimeout(() => resolve("late"), STOP_TIMEOUT_MS).unref());
    if ((await Promise.race([started.exited, timer])) === "late") {
      started.child.kill("SIGKILL");
      await started.exited;
    }
  }
  running.delete(started);
}

/** nginx started in `dir` (its prefix) as one foreground process, under `wrapper` (valgrind) when given. */
function startNginx(dir: string, conf: string, wrapper: string[] = []): Started {
  // -e: errors before the configuration's error_log is open go to stderr, not to /var/log/nginx.
  const argv = [...wrapper, NGINX, "-e", "stderr", "-p", dir, "-c", conf, "-g", SINGLE_PROCESS];
  return start(argv[0]!, argv.slice(1));
}

/** Waits until the proxy answers the bench request with 200; throws with its stderr and error log otherwise. */
async function waitServing(nginx: Started, dir: string, port: number, what: string): Promise<void> {
  let status = 0;
  await waitUntil(
    `${what} answers 200 on 127.0.0.1:${port}`,
    async () => {
      if (hasExited(nginx)) return true;
      status = await httpStatus("127.0.0.1", port, BENCH_DOMAIN, BENCH_PATH);
      return status === 200;
    },
    START_TIMEOUT_MS,
    100,
  ).catch(async (error: Error) => {
    throw new Error(`${error.message} (last status ${status})\n${nginx.stderr()}${await errorLog(dir)}`);
  });
  if (hasExited(nginx)) throw new Error(`${what} exited before serving:\n${nginx.stderr()}${await errorLog(dir)}`);
}

async function errorLog(dir: string): Promise<string> {
  const text = await readFile(join(dir, "logs/error.log"), "utf8").catch(() => "");
  return text ? `\nerror log:\n${text.slice(-4000)}` : "";
}

async function wrk(port: number, duration: string): Promise<WrkResult> {
  const { stdout } = await mustRun("wrk", [...WRK_ARGS, `-d${duration}`, "-H", `Host: ${BENCH_DOMAIN}`, `http://127.0.0.1:${port}${BENCH_PATH}`], { timeoutMs: 120_000 });
  const result = parseWrk(stdout);
  // Anything but 200s would measure an error page, not the proxying.
  if (result.non2xx + result.socketErrors > 0) throw new Error(`wrk got ${result.non2xx} non-2xx answers and ${result.socketErrors} socket errors:\n${stdout}`);
  return result;
}

/**
 * Instructions per request, from a profile taken only around the measured run: the warm-up
 * before it and nginx's start and stop are left out. Idle work during the run counts too: the
 * router checks its route table every 50 ms, ~170,000 instructions a second, ~120 per request
 * (0.3%) at callgrind's pace.
 */
async function instructionsPerRequest(target: Target, dir: string, conf: string, port: number): Promise<{ requests: number; perRequest: number }> {
  const profile = join(dir, "callgrind.out");
  const nginx = startNginx(dir, conf, ["valgrind", "--tool=callgrind", `--callgrind-out-file=${profile}`]);
  try {
    await waitServing(nginx, dir, port, `${target.name} under callgrind`);
    await wrk(port, WARMUP);
    const pid = String(nginx.child.pid);
    await mustRun("callgrind_control", ["-z", pid], { timeoutMs: 30_000 });
    const run = await wrk(port, DURATION);
    // The first dump of a profile is written to <file>.1.
    await mustRun("callgrind_control", ["-d", pid], { timeoutMs: 30_000 });
    const dump = await readFile(`${profile}.1`, "utf8");
    // The "summary" line is what callgrind_annotate prints as PROGRAM TOTALS.
    const summary = /^summary:\s+(\d+)$/m.exec(dump);
    if (!summary) throw new Error(`${target.name}: no summary line in ${profile}.1`);
    return { requests: run.requests, perRequest: Number(summary[1]) / run.requests };
  } finally {
    await stop(nginx, "SIGQUIT");
  }
}

/**
 * System calls per request by name, counted by strace attached to the same configuration
 * without valgrind (which makes system calls of its own), over a short run after a warm-up.
 */
async function syscallsPerRequest(target: Target, dir: string, conf: string, port: number): Promise<Map<string, number>> {
  const nginx = startNginx(dir, conf);
  try {
    await waitServing(nginx, dir, port, target.name);
    await wrk(port, WARMUP);
    const counts = join(dir, "strace.txt");
    const strace = start("strace", ["-c", "-U", "name,calls", "-f", "-o", counts, "-p", String(nginx.child.pid)]);
    let run: WrkResult;
    try {
      await waitUntil(`strace attached to ${target.name}`, async () => strace.stderr().includes("attached") || hasExited(strace), 10_000, 20);
      if (hasExited(strace)) throw new Error(`strace could not attach to ${target.name}:\n${strace.stderr()}`);
      run = await wrk(port, STRACE_DURATION);
    } finally {
      await stop(strace, "SIGTERM");
    }
    const perRequest = new Map<string, number>();
    for (const [, name, calls] of (await readFile(counts, "utf8")).matchAll(/^(\w+)\s+(\d+)$/gm)) {
      if (name !== "total") perRequest.set(name!, Number(calls) / run.requests);
    }
    return perRequest;
  } finally {
    await stop(nginx, "SIGQUIT");
  }
}

function onPath(command: string): boolean {
  return (process.env.PATH ?? "").split(delimiter).some((dir) => {
    try {
      accessSync(join(dir, command), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

/** Exits 2 with what to install when a tool the bench cannot do without is missing. */
function requireTools(): void {
  const missing = [
    !existsSync(NGINX) && `needs nginx at ${NGINX}: apt-get install -y nginx-light`,
    LUA_MODULES.some((module) => !existsSync(module)) && `needs nginx's Lua module (${LUA_MODULES.join(", ")}): apt-get install -y libnginx-mod-http-lua`,
    !(onPath("valgrind") && onPath("callgrind_control")) && "needs valgrind: apt-get install -y valgrind",
    !onPath("wrk") && "needs wrk: apt-get install -y wrk",
  ].filter((message): message is string => typeof message === "string");
  if (missing.length > 0) {
    console.error(missing.join("\n"));
    process.exit(2);
  }
}

/** Free ports on 127.0.0.1, all held until each is known, so no two are the same. */
async function freePorts(count: number): Promise<number[]> {
  const servers: Server[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const server = createServer();
      servers.push(server);
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(0, "127.0.0.1", resolve);
      });
    }
    return servers.map((server) => (server.address() as AddressInfo).port);
  } finally {
    await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
  }
}

const thousands = (value: number) => Math.round(value).toLocaleString("en-US");

function difference(value: number, base: number): string {
  const delta = value - base;
  const sign = delta >= 0 ? "+" : "-";
  return `${sign}${thousands(Math.abs(delta))} (${sign}${Math.abs((100 * delta) / base).toFixed(1)}%)`;
}

const totalCalls = (syscalls: Map<string, number>) => [...syscalls.values()].reduce((total, calls) => total + calls, 0);

/** One row per system call some target makes at least once per 100 requests; rarer ones are start-up and timers. */
function printSyscalls(measured: { name: string; syscalls: Map<string, number> }[]): void {
  const calls = (syscalls: Map<string, number>, name: string) => syscalls.get(name) ?? 0;
  const berth = measured.find((entry) => entry.name === "berth")!.syscalls;
  const frequent = [...new Set(measured.flatMap((entry) => [...entry.syscalls.keys()]))]
    .filter((name) => measured.some((entry) => calls(entry.syscalls, name) >= 0.01))
    .sort((a, b) => calls(berth, b) - calls(berth, a) || a.localeCompare(b));
  printTable(
    ["system calls per request", ...measured.map((entry) => entry.name)],
    [
      ...frequent.map((name) => [name, ...measured.map((entry) => calls(entry.syscalls, name).toFixed(2))]),
      ["all", ...measured.map((entry) => totalCalls(entry.syscalls).toFixed(2))],
    ],
  );
}

async function main(): Promise<void> {
  requireTools();
  const hasStrace = onPath("strace");
  const root = await mkdtemp(join(tmpdir(), "berth-bench-cost-"));
  try {
    const [backendPort, proxyPort] = (await freePorts(2)) as [number, number];
    const backendDir = join(root, "backend");
    await mkdir(join(backendDir, "www"), { recursive: true });
    await writeFile(join(backendDir, "www", BENCH_PATH), "ok\n");
    await writeFile(join(backendDir, "nginx.conf"), backendConf(backendDir, backendPort));
    const backend = startNginx(backendDir, join(backendDir, "nginx.conf"));
    await waitServing(backend, backendDir, backendPort, "backend");

    const versions = await Promise.all([runCommand(NGINX, ["-v"], { timeoutMs: 10_000 }), runCommand("valgrind", ["--version"], { timeoutMs: 10_000 })]);
    console.log(`host: ${hostLoad()}; ${versions.map(({ stdout, stderr }) => (stdout + stderr).trim()).join(", ")}`);
    console.log(`each target: one nginx process (${SINGLE_PROCESS}) on 127.0.0.1, backend nginx at 127.0.0.1:${backendPort}`);
    console.log(`instructions: callgrind around wrk ${WRK_ARGS.join(" ")} -d${DURATION} -H 'Host: ${BENCH_DOMAIN}' URL${BENCH_PATH}, after a ${WARMUP} warm-up`);
    console.log(hasStrace ? `system calls: strace -c -f -p PID around a ${STRACE_DURATION} wrk run, without valgrind` : "system calls: not counted (apt-get install -y strace)");
    console.log("");

    const measured: Measured[] = [];
    for (const target of targets(proxyPort, `127.0.0.1:${backendPort}`)) {
      const dir = join(root, target.name);
      await mkdir(dir);
      const conf = await target.write(dir);
      const { requests, perRequest } = await instructionsPerRequest(target, dir, conf, proxyPort);
      const syscalls = hasStrace ? await syscallsPerRequest(target, dir, conf, proxyPort) : undefined;
      measured.push({ target, requests, instructionsPerRequest: perRequest, ...(syscalls ? { syscalls } : {}) });
      console.log(`  ${target.name}: ${thousands(perRequest)} instructions/request over ${requests} requests`);
    }

    const perRequest = (name: string) => measured.find((entry) => entry.target.name === name)!.instructionsPerRequest;
    const minimal = perRequest("minimal");
    const berth = perRequest("berth");
    console.log("");
    printTable(
      ["target", "requests", "instructions/request", "vs berth", "vs hand-written", ...(hasStrace ? ["syscalls/request"] : [])],
      measured.map(({ target, requests, instructionsPerRequest, syscalls }) => [
        `${target.name}: ${target.what}`,
        String(requests),
        thousands(instructionsPerRequest),
        difference(instructionsPerRequest, berth),
        difference(instructionsPerRequest, minimal),
        ...(syscalls ? [totalCalls(syscalls).toFixed(2)] : []),
      ]),
    );
    console.log("");
    const ratios = [
      `berth / hand-written ${(berth / minimal).toFixed(2)}`,
      `required duties / hand-written ${(perRequest("required") / minimal).toFixed(2)}`,
      `required duties with the least Lua routing / hand-written ${(perRequest("required+lua") / minimal).toFixed(2)}`,
      `required duties with berth's router / hand-written ${(perRequest("required+router") / minimal).toFixed(2)}`,
      `berth / berth's features hand-written ${(berth / perRequest("features")).toFixed(2)}`,
    ];
    console.log(`instructions per request: ${ratios.join("; ")}`);
    if (hasStrace) {
      console.log("");
      printSyscalls(measured.map(({ target, syscalls }) => ({ name: target.name, syscalls: syscalls! })));
    }
  } finally {
    // The backend, and after a failure whatever else still runs: nginx (under valgrind or not) and strace stop on SIGTERM.
    for (const started of [...running]) await stop(started, "SIGTERM");
    await rm(root, { recursive: true, force: true });
  }
}

await main();
