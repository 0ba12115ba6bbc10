// Reads a spec directory from disk: `platform.yaml` plus `apps/*.yaml`. The only I/O of
// the spec concern; validation itself is pure (validate.ts).
import { readdir, readFile, stat } from "node:fs/promises";
import { basename, dirname, join, relative } from "node:path";
import { BerthError } from "../errors.js";
import type { SpecFiles } from "./validate.js";

export const PLATFORM_FILE = "platform.yaml";
export const APPS_DIR = "apps";

export interface SpecLocation {
  /** Absolute directory holding platform.yaml; app source paths resolve from the app files. */
  root: string;
  files: SpecFiles;
}

/** Accepts the spec directory or its platform.yaml. */
export async function readSpecFiles(target: string): Promise<SpecLocation> {
  let root = target;
  const info = await stat(target).catch(() => undefined);
  if (!info) throw new BerthError("SPEC_NOT_FOUND", `${target}: no such file or directory`, "Pass the directory that holds platform.yaml.");
  if (info.isFile()) root = dirname(target);
  const platformPath = info.isFile() ? target : join(root, PLATFORM_FILE);
  const platformText = await readFile(platformPath, "utf8").catch(() => undefined);
  if (platformText === undefined) {
    throw new BerthError("SPEC_NOT_FOUND", `${platformPath}: no platform file`, `Create ${PLATFORM_FILE} in ${root} (see examples/reference-platform).`);
  }
  const appsDir = join(root, APPS_DIR);
  const entries = await readdir(appsDir).catch(() => [] as string[]);
  const appFiles = entries.filter((entry) => /\.ya?ml$/.test(entry)).sort();
  const apps = await Promise.all(
    appFiles.map(async (entry) => ({ file: `${APPS_DIR}/${entry}`, text: await readFile(join(appsDir, entry), "utf8") })),
  );
  return { root, files: { platform: { file: relative(root, platformPath) || basename(platformPath), text: platformText }, apps } };
}
