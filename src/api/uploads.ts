// Build contexts uploaded for a deploy (`berth deploy --upload`): a tar archive (gzip
// allowed) unpacked under the state directory. Only regular files and directories are
// kept — links, devices and paths leaving the upload are refused — and the size is capped,
// as sent and as unpacked (a small gzip of zeros must not fill the disk).
import { randomBytes } from "node:crypto";
import { mkdir, readdir, rm, stat } from "node:fs/promises";
import type { IncomingMessage } from "node:http";
import { join, normalize } from "node:path";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGunzip } from "node:zlib";
import { extract, type Headers } from "tar-fs";
import { refuse } from "./problem.js";

export interface UploadLimits {
  /** Bytes as sent (gzip'd or not). */
  bytes: number;
  /** Bytes of the tar archive once gunzipped. */
  unpackedBytes: number;
}

export const UPLOAD_LIMITS: UploadLimits = { bytes: 512 * 1024 * 1024, unpackedBytes: 2 * 1024 * 1024 * 1024 };
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

/** Passes chunks on until more than `limit` bytes went through, then fails with `tooLarge()`. */
function capped(limit: number, tooLarge: () => Error): Transform & { bytes: number } {
  const counter = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      counter.bytes += chunk.length;
      if (counter.bytes > limit) done(tooLarge());
      else done(null, chunk);
    },
  }) as Transform & { bytes: number };
  counter.bytes = 0;
  return counter;
}

export async function receiveUpload(request: IncomingMessage, stateDir: string, isGzip: boolean, limits: UploadLimits = UPLOAD_LIMITS): Promise<{ id: string; bytes: number; files: number }> {
  await expireOld(stateDir);
  const declared = Number(request.headers["content-length"] ?? 0);
  if (declared > limits.bytes) throw refuse(413, "body-too-large", `the upload is ${declared} bytes; the limit is ${limits.bytes}`);
  const id = `up_${randomBytes(8).toString("hex")}`;
  const dir = join(uploadsDir(stateDir), id);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  let files = 0;
  const sent = capped(limits.bytes, () => refuse(413, "body-too-large", `the upload is over the limit of ${limits.bytes} bytes`));
  const unpacked = capped(limits.unpackedBytes, () => refuse(413, "body-too-large", `the upload unpacks to over ${limits.unpackedBytes} bytes`));
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
    await pipeline(request, sent, ...(isGzip ? [createGunzip()] : []), unpacked, unpack);
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    if (error instanceof Error && error.name === "ApiError") throw error;
    throw refuse(400, "invalid-upload", `the upload is not a readable ${isGzip ? "gzip'd " : ""}tar archive: ${(error as Error).message}`);
  }
  if (files === 0) {
    await rm(dir, { recursive: true, force: true });
    throw refuse(400, "invalid-upload", "the archive holds no files");
  }
  return { id, bytes: sent.bytes, files };
}
