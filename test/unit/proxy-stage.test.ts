// Safe proxy changes on a real filesystem with the real nginx: a rejected configuration
// leaves the live generation untouched and shows nginx's own words; only changed files are
// written, and nginx checks only the changed site when that is as good as checking all.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readFile, readlink, readdir, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";
import { BerthError } from "../../src/errors.js";
import {
  PROXY_MOUNT,
  proxyDir,
  pruneGenerations,
  signalMaster,
  stageProxyConfig,
  type ProxyValidator,
  type RouteTableCheck,
  type RouteTableChecker,
} from "../../src/proxy/apply.js";

const run = promisify(execFile);
const NGINX = "/usr/sbin/nginx";

/** Runs the host's nginx -t on a main file, mapping the container path to the temp dir; records what it checked. */
function hostValidator(root: string, checked: string[] = []): ProxyValidator {
  return async (mainFile) => {
    checked.push(mainFile.slice(mainFile.lastIndexOf("/") + 1));
    const conf = join(proxyDir(root).root, mainFile.slice(PROXY_MOUNT.length));
    try {
      const { stderr } = await run(NGINX, ["-t", "-q", "-p", root, "-c", conf]);
      return { ok: true, output: stderr };
    } catch (error) {
      return { ok: false, output: String((error as { stderr?: string }).stderr) };
    }
  };
}

const NGINX_CONF = `pid nginx.pid;\nerror_log stderr;\nevents {}\nhttp {\n  access_log off;\n  include sites/*.conf;\n}\n`;

const config = (body: string) => ({
  config: { "nginx.conf": NGINX_CONF, "sites/a.conf": body },
  pages: { "unavailable.html": "<p>unavailable</p>\n" },
});

/** Sites rendered the way berth renders them (indented blocks), one per name. */
function sites(bodies: Record<string, string>, certificate?: string) {
  const files: Record<string, string> = { "nginx.conf": NGINX_CONF };
  let port = 1;
  for (const [name, body] of Object.entries(bodies)) {
    const tls = certificate ? `    ssl_certificate ${certificate};\n    ssl_certificate_key ${certificate};\n` : "";
    files[`sites/${name}.conf`] = `server {\n    listen 127.0.0.1:${port++};\n    server_name ${name}.example;\n${tls}\n    location / {\n        ${body}\n    }\n}\n`;
  }
  return { config: files, pages: {} };
}

test("a valid config becomes the live generation; an identical one changes nothing", async () => {
  const root = await mkdtemp(join(tmpdir(), "berth-proxy-"));
  const dir = proxyDir(root);
  const first = await stageProxyConfig(dir, config("server { listen 127.0.0.1:1; return 204; }\n"), hostValidator(root));
  assert.deepEqual(first, { changed: true, generation: 1, checked: "all", isRouteTableOnly: false });
  assert.equal(await readlink(dir.current), "gen/1");
  assert.equal(await readFile(join(dir.pages, "unavailable.html"), "utf8"), "<p>unavailable</p>\n");
  const again = await stageProxyConfig(dir, config("server { listen 127.0.0.1:1; return 204; }\n"), hostValidator(root));
  assert.deepEqual(again, { changed: false, generation: 1, checked: "none", isRouteTableOnly: false });
});

test("a config nginx rejects is removed and the live one stays, with nginx's message", async () => {
  const root = await mkdtemp(join(tmpdir(), "berth-proxy-"));
  const dir = proxyDir(root);
  await stageProxyConfig(dir, config("server { listen 127.0.0.1:1; return 204; }\n"), hostValidator(root));
  await assert.rejects(stageProxyConfig(dir, config("server { listen 127.0.0.1:1; retrun 204; }\n"), hostValidator(root)), (error: unknown) => {
    assert.ok(error instanceof BerthError);
    assert.equal(error.code, "PROXY_CONFIG_REJECTED");
    assert.match(error.message, /the running one is unchanged/);
    assert.match(error.message, /unknown directive "retrun"/);
    return true;
  });
  assert.equal(await readlink(dir.current), "gen/1", "the live generation is untouched");
  assert.deepEqual((await readdir(dir.gen)).sort(), ["1"], "the rejected generation is gone");
});

test("a changed site is written, the others are links to the live generation's files, and nginx checks the changed site", async () => {
  const root = await mkdtemp(join(tmpdir(), "berth-proxy-"));
  const dir = proxyDir(root);
  const checked: string[] = [];
  await stageProxyConfig(dir, sites({ a: "return 204;", b: "return 204;", c: "return 204;" }), hostValidator(root, checked));
  const second = await stageProxyConfig(dir, sites({ a: "return 204;", b: "return 200;", c: "return 204;" }), hostValidator(root, checked));
  assert.deepEqual(second, { changed: true, generation: 2, checked: "changed", isRouteTableOnly: false });
  assert.deepEqual(checked, ["nginx.conf", "berth-check.conf"]);
  const inode = async (generation: number, path: string) => (await stat(join(dir.gen, String(generation), path))).ino;
  assert.equal(await inode(2, "sites/a.conf"), await inode(1, "sites/a.conf"));
  assert.equal(await inode(2, "nginx.conf"), await inode(1, "nginx.conf"));
  assert.notEqual(await inode(2, "sites/b.conf"), await inode(1, "sites/b.conf"));
  assert.match(await readFile(join(dir.gen, "2", "sites/b.conf"), "utf8"), /return 200;/);
  assert.deepEqual((await readdir(join(dir.gen, "2"))).sort(), ["berth-manifest.json", "nginx.conf", "sites"], "the check's file is gone");
});

test("a changed site that nginx rejects is caught by the narrowed check, and the live generation stays", async () => {
  const root = await mkdtemp(join(tmpdir(), "berth-proxy-"));
  const dir = proxyDir(root);
  const checked: string[] = [];
  await stageProxyConfig(dir, sites({ a: "return 204;", b: "return 204;" }), hostValidator(root, checked));
  await assert.rejects(stageProxyConfig(dir, sites({ a: "return 204;", b: "retrun 204;" }), hostValidator(root, checked)), /unknown directive "retrun"/);
  assert.deepEqual(checked, ["nginx.conf", "berth-check.conf", "nginx.conf"], "the narrowed verdict is confirmed whole");
  assert.equal(await readlink(dir.current), "gen/1");
  assert.deepEqual(await readdir(dir.gen), ["1"]);
});

test("a narrowed check that fails only for what the sites left out (a variable another site sets) is passed by checking everything", async () => {
  const root = await mkdtemp(join(tmpdir(), "berth-proxy-"));
  const dir = proxyDir(root);
  const checked: string[] = [];
  // nginx.conf maps a variable that only site a sets, as berth's maps $berth_route_limit, which only routed sites set.
  const withMap = (bodies: Record<string, string>) => {
    const files = sites(bodies);
    return { ...files, config: { ...files.config, "nginx.conf": NGINX_CONF.replace("access_log off;", "access_log off;\n  map $site_var $mapped { default 1; }") } };
  };
  await stageProxyConfig(dir, withMap({ a: "set $site_var 1; return 204;", b: "return 204;" }), hostValidator(root, checked));
  const staged = await stageProxyConfig(dir, withMap({ a: "set $site_var 1; return 204;", b: "return 200;" }), hostValidator(root, checked));
  assert.deepEqual(checked, ["nginx.conf", "berth-check.conf", "nginx.conf"]);
  assert.equal(staged.checked, "all");
  assert.equal(await readlink(dir.current), "gen/2");
  assert.deepEqual((await readdir(join(dir.gen, "2"))).includes("berth-check.conf"), false);
});

test("nginx checks everything when a change reaches beyond its file, or the live generation was never checked", async () => {
  const root = await mkdtemp(join(tmpdir(), "berth-proxy-"));
  const dir = proxyDir(root);
  const checked: string[] = [];
  await stageProxyConfig(dir, sites({ a: "return 204;", b: "return 204;" }), undefined);
  await stageProxyConfig(dir, sites({ a: "return 204;", b: "return 200;" }), hostValidator(root, checked));
  assert.deepEqual(checked, ["nginx.conf"], "the live generation was never checked");
  // A new server name: the shared server-name hash of all sites is built anew.
  const renamed = sites({ a: "return 204;", b: "return 200;" });
  renamed.config["sites/b.conf"] = renamed.config["sites/b.conf"]!.replace("server_name b.example;", "server_name b.example www.b.example;");
  await stageProxyConfig(dir, renamed, hostValidator(root, checked));
  assert.deepEqual(checked, ["nginx.conf", "nginx.conf"]);
  // A new site.
  await stageProxyConfig(dir, sites({ a: "return 204;", b: "return 200;", c: "return 204;" }), hostValidator(root, checked));
  assert.deepEqual(checked, ["nginx.conf", "nginx.conf", "nginx.conf"]);
});

test("a certificate that changed on disk since the last check makes nginx check everything", async () => {
  const root = await mkdtemp(join(tmpdir(), "berth-proxy-"));
  const dir = proxyDir(root);
  const certificate = join(dir.certs, "a", "fullchain.pem");
  await mkdir(join(dir.certs, "a"), { recursive: true });
  await writeFile(certificate, "first certificate\n");
  const inContainer = `${PROXY_MOUNT}/certs/a/fullchain.pem`;
  // Only which file is checked matters here (nginx would need a real certificate and key).
  const checked: string[] = [];
  const validator: ProxyValidator = async (mainFile) => {
    checked.push(mainFile.slice(mainFile.lastIndexOf("/") + 1));
    return { ok: true, output: "" };
  };
  await stageProxyConfig(dir, sites({ a: "return 204;", b: "return 204;" }, inContainer), validator);
  await stageProxyConfig(dir, sites({ a: "return 204;", b: "return 200;" }, inContainer), validator);
  assert.deepEqual(checked, ["nginx.conf", "berth-check.conf"]);
  await writeFile(certificate, "renewed certificate\n");
  await stageProxyConfig(dir, sites({ a: "return 204;", b: "return 204;" }, inContainer), validator);
  assert.deepEqual(checked, ["nginx.conf", "berth-check.conf", "nginx.conf"]);
});

test("pruning keeps the last three generations", async () => {
  const root = await mkdtemp(join(tmpdir(), "berth-proxy-"));
  const dir = proxyDir(root);
  for (let i = 0; i < 5; i++) await stageProxyConfig(dir, sites({ a: `return ${200 + i};` }), undefined);
  assert.deepEqual((await readdir(dir.gen)).sort(), ["1", "2", "3", "4", "5"]);
  await pruneGenerations(dir);
  assert.deepEqual((await readdir(dir.gen)).sort(), ["3", "4", "5"]);
  assert.equal(await readlink(dir.current), "gen/5");
});

test("a prepared generation is checked but not live; staging the same files later swaps to it without another check", async () => {
  const root = await mkdtemp(join(tmpdir(), "berth-proxy-"));
  const dir = proxyDir(root);
  const checked: string[] = [];
  await stageProxyConfig(dir, sites({ a: "return 204;", b: "return 204;" }), hostValidator(root, checked));
  const prepared = await stageProxyConfig(dir, sites({ a: "return 204;", b: "return 200;" }), hostValidator(root, checked), { swap: false });
  assert.deepEqual(prepared, { changed: true, generation: 2, checked: "changed", isRouteTableOnly: false });
  assert.equal(await readlink(dir.current), "gen/1", "preparing changes nothing that serves");
  // Other files than the prepared ones: a generation of their own, checked.
  const other = await stageProxyConfig(dir, sites({ a: "return 200;", b: "return 204;" }), hostValidator(root, checked), { swap: false });
  assert.equal(other.generation, 3);
  const switched = await stageProxyConfig(dir, sites({ a: "return 204;", b: "return 200;" }), hostValidator(root, checked));
  assert.deepEqual(switched, { changed: true, generation: 2, checked: "earlier", isRouteTableOnly: false });
  assert.equal(await readlink(dir.current), "gen/2");
  assert.deepEqual(checked, ["nginx.conf", "berth-check.conf", "berth-check.conf"], "no check at the swap");
});

test("a prepared generation that nginx rejected is not kept, so the switch checks again and fails the same way", async () => {
  const root = await mkdtemp(join(tmpdir(), "berth-proxy-"));
  const dir = proxyDir(root);
  await stageProxyConfig(dir, sites({ a: "return 204;" }), hostValidator(root));
  await assert.rejects(stageProxyConfig(dir, sites({ a: "retrun 204;" }), hostValidator(root), { swap: false }), /unknown directive/);
  await assert.rejects(stageProxyConfig(dir, sites({ a: "retrun 204;" }), hostValidator(root)), /unknown directive/);
  assert.equal(await readlink(dir.current), "gen/1");
});

/** Sites plus a route table, as renderProxyConfig writes them (the table's content is the router's business). */
function withRoutes(bodies: Record<string, string>, routes: string) {
  const files = sites(bodies);
  return { ...files, config: { ...files.config, "routes.tsv": `berth-routes\t2\ttoken\tconfig\n${routes}` } };
}

/** A router that answers `verdict` for every staged table, recording which generations it was asked about. */
function router(verdict: RouteTableCheck["verdict"], asked: number[] = [], output = ""): RouteTableChecker {
  return async (generation) => {
    asked.push(generation);
    return { verdict, output };
  };
}

test("a change of the route table alone is checked by the router, not nginx, and swapped in for the workers to adopt", async () => {
  const root = await mkdtemp(join(tmpdir(), "berth-proxy-"));
  const dir = proxyDir(root);
  const checked: string[] = [];
  const asked: number[] = [];
  await stageProxyConfig(dir, withRoutes({ a: "return 204;" }, "route\ta\tproduction\tprefix\t/\ta_web_production\tgeneral\n"), hostValidator(root, checked), { checkRouteTable: router("fits", asked) });
  assert.deepEqual(asked, [1], "a first table is checked too");
  const staged = await stageProxyConfig(
    dir,
    withRoutes({ a: "return 204;" }, "route\ta\tproduction\tprefix\t/\ta_web_production\tgeneral\nroute\ta\tproduction\tprefix\t/new\ta_web_production\tgeneral\n"),
    hostValidator(root, checked),
    { checkRouteTable: router("fits", asked) },
  );
  assert.deepEqual(staged, { changed: true, generation: 2, checked: "route-table", isRouteTableOnly: true });
  assert.deepEqual(checked, ["nginx.conf"], "nginx -t ran for the first generation only");
  assert.deepEqual(asked, [1, 2]);
  assert.equal(await readlink(dir.current), "gen/2");
  assert.match(await readFile(join(dir.gen, "2", "routes.tsv"), "utf8"), /\/new/);
  assert.equal((await stat(join(dir.gen, "2", "sites/a.conf"))).ino, (await stat(join(dir.gen, "1", "sites/a.conf"))).ino, "the site is a link");
});

test("a route table the router rejects is removed and the live generation stays, with the router's words", async () => {
  const root = await mkdtemp(join(tmpdir(), "berth-proxy-"));
  const dir = proxyDir(root);
  await stageProxyConfig(dir, withRoutes({ a: "return 204;" }, ""), hostValidator(root), { checkRouteTable: router("fits") });
  const bad = withRoutes({ a: "return 204;" }, "route\ta\tproduction\tregex\t^/(\ta_web_production\tgeneral\n");
  await assert.rejects(stageProxyConfig(dir, bad, hostValidator(root), { checkRouteTable: router("rejected", [], "line 2: pcre_compile() failed: missing )") }), (error: unknown) => {
    assert.ok(error instanceof BerthError);
    assert.equal(error.code, "PROXY_CONFIG_REJECTED");
    assert.match(error.message, /router rejected the new route table; the running one is unchanged:\nline 2: pcre_compile\(\) failed/);
    return true;
  });
  assert.equal(await readlink(dir.current), "gen/1");
  assert.deepEqual((await readdir(dir.gen)).sort(), ["1"]);
});

test("a route table for a configuration nginx does not run, or no router answering, means nginx -t and a reload", async () => {
  const root = await mkdtemp(join(tmpdir(), "berth-proxy-"));
  const dir = proxyDir(root);
  const checked: string[] = [];
  await stageProxyConfig(dir, withRoutes({ a: "return 204;" }, ""), hostValidator(root, checked));
  for (const [index, verdict] of (["other-configuration", "unanswered"] as const).entries()) {
    const staged = await stageProxyConfig(dir, withRoutes({ a: "return 204;" }, `route\ta\tproduction\tprefix\t/r${index}\ta_web_production\tgeneral\n`), hostValidator(root, checked), {
      checkRouteTable: router(verdict),
    });
    assert.equal(staged.isRouteTableOnly, false, verdict);
    // No site changed: a narrowed main file would hold no site at all, so nginx checks everything.
    assert.equal(staged.checked, "all", verdict);
  }
  // With a site changed too, the table is checked as well, and nginx checks the site.
  const asked: number[] = [];
  const both = await stageProxyConfig(dir, withRoutes({ a: "return 200;" }, "route\ta\tproduction\tprefix\t/both\ta_web_production\tgeneral\n"), hostValidator(root, checked), {
    checkRouteTable: router("other-configuration", asked),
  });
  assert.deepEqual(both, { changed: true, generation: 4, checked: "changed", isRouteTableOnly: false });
  assert.deepEqual(asked, [4]);
  assert.deepEqual(checked, ["nginx.conf", "nginx.conf", "nginx.conf", "berth-check.conf"]);
});

test("signalMaster signals only a process whose cgroup names the container; otherwise the engine is asked", async () => {
  const id = "0123456789abcdef".repeat(4);
  let signalled = 0;
  const count = () => signalled++;
  process.on("SIGWINCH", count);
  try {
    // This process's cgroup does not name that id: no signal is sent.
    assert.equal(await signalMaster({ containerId: id, pid: process.pid }, "SIGWINCH"), false);
    assert.equal(await signalMaster({ containerId: "not-an-id", pid: process.pid }, "SIGWINCH"), false);
    assert.equal(await signalMaster({ containerId: id, pid: 0 }, "SIGWINCH"), false);
    assert.equal(await signalMaster({ containerId: id, pid: 1 }, "SIGWINCH"), false);
    assert.equal(await signalMaster({ containerId: id, pid: 2 ** 22 + 1 }, "SIGWINCH"), false);
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(signalled, 0);
  } finally {
    process.off("SIGWINCH", count);
  }
});
