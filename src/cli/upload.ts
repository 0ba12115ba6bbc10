// The local working directory as a build context for a remote deploy: the files that
// .dockerignore lets through (never .git), packed as a gzip'd tar stream.
import { stat } from "node:fs/promises";
import type { Readable } from "node:stream";
import { createGzip } from "node:zlib";
import { pack } from "tar-fs";
import { BerthError } from "../errors.js";
import { listContext } from "../runtime/images.js";

export async function packSource(dir: string): Promise<{ stream: Readable; files: number }> {
  if (!(await stat(dir).then((info) => info.isDirectory(), () => false))) throw new BerthError("BAD_ARGUMENT", `--upload ${dir}: not a directory`);
  const entries = (await listContext(dir, "")).filter((path) => path !== ".git" && !path.startsWith(".git/"));
  if (entries.length === 0) throw new BerthError("BAD_ARGUMENT", `--upload ${dir}: no files to send (after .dockerignore)`);
  return { stream: pack(dir, { entries }).pipe(createGzip()), files: entries.length };
}
