// Self-signed certificates per environment, for local domains and until ACME issues real ones.
import { execFile } from "node:child_process";
import { mkdir, readFile, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { writeFileAtomic } from "../host/files.js";

const run = promisify(execFile);

export interface CertificateFiles {
  dir: string;
  cert: string;
  key: string;
}

export function certificateFiles(certsDir: string, name: string): CertificateFiles {
  const dir = join(certsDir, name);
  return { dir, cert: join(dir, "fullchain.pem"), key: join(dir, "privkey.pem") };
}

/**
 * Makes sure a self-signed certificate for exactly these domains exists; returns whether it
 * (re)created one. The domain list is kept beside the files so a changed list re-issues.
 */
export async function ensureSelfSigned(files: CertificateFiles, domains: string[]): Promise<boolean> {
  const marker = join(files.dir, "domains");
  const wanted = domains.join(",");
  const current = await readFile(marker, "utf8").catch(() => undefined);
  const hasCert = await readFile(files.cert, "utf8").then(() => true, () => false);
  if (current === wanted && hasCert) return false;
  await mkdir(files.dir, { recursive: true, mode: 0o700 });
  const temp = join(files.dir, ".new");
  await rm(temp, { recursive: true, force: true });
  await mkdir(temp, { mode: 0o700 });
  await run("openssl", [
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
    "-days", "365", "-subj", `/CN=${domains[0]}`,
    "-addext", `subjectAltName=${domains.map((domain) => `DNS:${domain}`).join(",")}`,
    "-keyout", join(temp, "privkey.pem"), "-out", join(temp, "fullchain.pem"),
  ]);
  // Key first, then certificate: nginx reads both on reload, and a cert without its key fails.
  await rename(join(temp, "privkey.pem"), files.key);
  await rename(join(temp, "fullchain.pem"), files.cert);
  await rm(temp, { recursive: true, force: true });
  await writeFileAtomic(marker, wanted);
  return true;
}
