// Images of tenant components: built from the app's source through the Engine API, tagged by
// a hash of the build context so an unchanged source is never rebuilt.
import type { Ignore } from "@balena/dockerignore";
import { createHash } from "node:crypto";
import { createRequire } from "node:module";
import tar from "tar-fs";
import { readdir, readFile, stat } from "node:fs/promises";
import { join, relative } from "node:path";
import { BerthError } from "../errors.js";
import { engine, imageExists, type Docker } from "../host/docker.js";
import { LABEL } from "../plan/names.js";
import type { ImageSource } from "../plan/types.js";

// The package is CommonJS whose typings claim an ES default export; load it as what it is.
const ignore = createRequire(import.meta.url)("@balena/dockerignore") as (options?: { ignorecase?: boolean }) => Ignore;

export type Progress = (line: string) => void;

/** Files of the build context after .dockerignore; the Dockerfile is always sent, as Docker's CLI does. */
export async function listContext(dir: string, dockerfile: string): Promise<string[]> {
  const rules = await readFile(join(dir, ".dockerignore"), "utf8").catch(() => "");
  const ignored = ignore({ ignorecase: false }).add(rules).createFilter();
  const filter = (path: string) => path === dockerfile || path === ".dockerignore" || ignored(path);
  const files: string[] = [];
  const walk = async (current: string): Promise<void> => {
    const entries = await readdir(current, { withFileTypes: true });
    for (const entry of entries.sort((a, b) => a.name.localeCompare(b.name))) {
      const path = join(current, entry.name);
      const rel = relative(dir, path);
      if (!filter(rel)) continue;
      if (entry.isDirectory()) await walk(path);
      else files.push(rel);
    }
  };
  await walk(dir);
  return files;
}

/** Hash of every file name, mode and content in the build context (after .dockerignore). */
export async function contextHash(dir: string, dockerfile: string): Promise<string> {
  const hash = createHash("sha256");
  hash.update(`dockerfile:${dockerfile}\n`);
  const files = await listContext(dir, dockerfile);
  const contents = await Promise.all(files.map(async (file) => {
    const path = join(dir, file);
    const [content, info] = await Promise.all([readFile(path), stat(path)]);
    return { file, content, mode: info.mode & 0o777 };
  }));
  for (const { file, content, mode } of contents) {
    hash.update(`${file}\0${mode}\0${content.length}\0`);
    hash.update(content);
  }
  return hash.digest("hex").slice(0, 12);
}

export function imageTag(app: string, component: string, hash: string): string {
  return `berth/${app}-${component}:${hash}`;
}

async function build(docker: Docker, source: Extract<ImageSource, { kind: "build" }>, dir: string, tag: string, progress: Progress): Promise<void> {
  const entries = await listContext(dir, source.dockerfile);
  const context = tar.pack(dir, { entries });
  const stream = await engine(`building ${tag}`, () =>
    docker.buildImage(
      context as unknown as NodeJS.ReadableStream,
      {
        t: tag,
        dockerfile: source.dockerfile,
        labels: { [LABEL.managed]: "true", [LABEL.app]: source.app, [LABEL.component]: source.component },
        rm: true,
        forcerm: true,
      },
    ),
  );
  const tail: string[] = [];
  await new Promise<void>((resolve, reject) => {
    docker.modem.followProgress(
      stream,
      (error: Error | null, output: { error?: string; errorDetail?: { message?: string } }[]) => {
        const failed = error?.message ?? output.find((event) => event.error)?.error;
        if (failed) {
          reject(new BerthError("BUILD_FAILED", `building ${source.app}/${source.component} failed: ${failed.trim()}\n${tail.slice(-10).join("\n")}`, "Fix the Dockerfile or source and apply again."));
        } else resolve();
      },
      (event: { stream?: string; status?: string }) => {
        const line = (event.stream ?? event.status ?? "").trimEnd();
        if (line === "") return;
        tail.push(line);
        progress(`  ${source.app}/${source.component} | ${line}`);
      },
    );
  });
}

/** Makes sure the image a component runs exists locally; returns its reference. */
export async function ensureImage(docker: Docker, source: ImageSource, progress: Progress): Promise<{ ref: string; built: boolean }> {
  if (source.kind === "image") {
    if (!(await imageExists(docker, source.ref))) {
      throw new BerthError("IMAGE_MISSING", `image ${source.ref} is not on this host`, "Build or load it (docker load), or use build: in the app file; berth does not pull from registries.");
    }
    return { ref: source.ref, built: false };
  }
  if (source.source.kind === "git") {
    throw new BerthError("BAD_ARGUMENT", `${source.app}: building from a git source is done by berth deploy`, "Use source: { path } for berth apply, or deploy with berth deploy.");
  }
  const dir = join(source.source.dir, source.context);
  const hash = await contextHash(dir, source.dockerfile).catch(() => {
    throw new BerthError("BUILD_FAILED", `build context ${dir} of ${source.app}/${source.component} cannot be read`, "Check source.path and build.context in the app file.");
  });
  const tag = imageTag(source.app, source.component, hash);
  if (await imageExists(docker, tag)) return { ref: tag, built: false };
  progress(`building ${tag}`);
  await build(docker, source, dir, tag, progress);
  return { ref: tag, built: true };
}
