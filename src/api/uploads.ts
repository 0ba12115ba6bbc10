// Build contexts uploaded for a deploy (`berth deploy --upload`): a tar archive (gzip
// allowed) unpacked under the state directory. Only regular files and directories are
// kept — links, devices and paths leaving the upload are refused — and the size is capped.
import { randomBytes } from "node:crypto";
import { mkdir, readdir, rm, stat } from "node:fs/promises";
import type { IncomingMessage } from "node:http";
import { join, normalize } from "node:path";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGunzip } from "node:zlib";
import { extract, type Headers } from "tar-fs";
import { refuse } from "./problem.js";

export const MAX_UPLOAD_BYTES = 512 * 1024 * 1024;
const EXPIRY_MS = 60 * 60_000;
export const UPLOAD_ID = /^up_[0-9a-f]{16}$/;

export function uploadsDir(stateDir: string): string {
  return join(stateDir, "uploads");
}

export function uploadDir(stateDir: string, id: string): string {
  if (!UPLOAD_ID.test(id)) throw refuse(400, "invalid-request", `${id} is not an upload id`);
  return join(uploadsDir(stateDir), id);
}

/** Removes uploads older than an hour. */
async function expireOld(stateDir: string): Promise<void> {
  const root = uploadsDir(stateDir);
  for (const name of await readdir(root).catch(() => [] as string[])) {
    const info = await stat(join(root, name)).catch(() => undefined);
    if (info && Date.now() - info.mtimeMs > EXPIRY_MS) await rm(join(root, name), { recursive: true, force: true });
  }
}

export async function receiveUpload(request: IncomingMessage, stateDir: string, isGzip: boolean): Promise<{ id: string; bytes: number; files: number }> {
  await expireOld(stateDir);
  const declared = Number(request.headers["content-length"] ?? 0);
  if (declared > MAX_UPLOAD_BYTES) throw refuse(413, "body-too-large", `the upload is ${declared} bytes; the limit is ${MAX_UPLOAD_BYTES}`);
  const id = `up_${randomBytes(8).toString("hex")}`;
  const dir = join(uploadsDir(stateDir), id);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  let bytes = 0;
  let files = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      bytes += chunk.length;
      if (bytes > MAX_UPLOAD_BYTES) done(refuse(413, "body-too-large", `the upload is over the limit of ${MAX_UPLOAD_BYTES} bytes`));
      else done(null, chunk);
    },
  });
  const unpack = extract(dir, {
    ignore: (name: string, header?: Headers) => {
      const inside = normalize(name.startsWith(dir) ? name.slice(dir.length) : name).replace(/^\/+/, "");
      const isKept = (header?.type === "file" || header?.type === "directory") && !inside.split("/").includes("..");
      if (isKept && header?.type === "file") files++;
      return !isKept;
    },
    dmode: 0o755,
    fmode: 0o644,
    readable: true,
  });
  try {
    await pipeline(request, counter, ...(isGzip ? [createGunzip()] : []), unpack);
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    if (error instanceof Error && error.name === "ApiError") throw error;
    throw refuse(400, "invalid-upload", `the upload is not a readable ${isGzip ? "gzip'd " : ""}tar archive: ${(error as Error).message}`);
  }
  if (files === 0) {
    await rm(dir, { recursive: true, force: true });
    throw refuse(400, "invalid-upload", "the archive holds no files");
  }
  return { id, bytes, files };
}
