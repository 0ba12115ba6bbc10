#!/usr/bin/env node
// Vendors a Node app's npm dependencies so its image builds without reaching a registry.
//
//   node vendor-npm-deps.mjs DIR     (DIR holds package.json; run after changing deps)
//
// 1. resolves the dependency tree into DIR/package-lock.json (npm, with the registry);
// 2. `npm pack`s every locked package into DIR/vendor/ and checks it against the
//    lockfile's sha512 integrity;
// 3. points each lockfile entry's "resolved" at its tarball (file:vendor/...).
//
// `npm ci --offline` then installs exactly the locked packages from vendor/, and npm
// itself verifies every tarball's integrity. Why: build containers on some hosts reach
// the registry only through a TLS-intercepting proxy they do not trust, and an offline
// build is reproducible anyway.
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { readdirSync, readFileSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import process from "node:process";

const dir = path.resolve(process.argv[2] ?? ".");
const vendor = path.join(dir, "vendor");
const lockPath = path.join(dir, "package-lock.json");
const npm = (args, cwd) => execFileSync("npm", args, { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] });

// Resolve from the registry: drop our file: entries first, or npm would keep them.
rmSync(lockPath, { force: true });
npm(["install", "--package-lock-only", "--ignore-scripts", "--no-audit", "--no-fund"], dir);
const lock = JSON.parse(readFileSync(lockPath, "utf8"));

rmSync(vendor, { recursive: true, force: true });
mkdirSync(vendor);
for (const [key, entry] of Object.entries(lock.packages)) {
  if (key === "" || entry.link) continue;
  const name = entry.name ?? key.slice(key.lastIndexOf("node_modules/") + "node_modules/".length);
  const [packed] = JSON.parse(npm(["pack", "--json", "--silent", `${name}@${entry.version}`], vendor));
  const file = path.join(vendor, packed.filename);
  const digest = "sha512-" + createHash("sha512").update(readFileSync(file)).digest("base64");
  if (digest !== entry.integrity) {
    throw new Error(`${name}@${entry.version}: the packed tarball's ${digest} differs from the lockfile's ${entry.integrity}`);
  }
  // Keep the key order npm writes (version, resolved, integrity, ...) for small diffs.
  lock.packages[key] = { version: entry.version, resolved: `file:vendor/${packed.filename}`, integrity: entry.integrity, ...entry };
  lock.packages[key].resolved = `file:vendor/${packed.filename}`;
}
writeFileSync(lockPath, JSON.stringify(lock, null, 2) + "\n");
process.stdout.write(`vendored ${readdirSync(vendor).length} packages into ${path.relative(process.cwd(), vendor) || "."}\n`);
