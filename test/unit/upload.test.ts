// The build context `berth deploy --upload` sends: the files .dockerignore lets through (its
// negations included), never .git, packed as a gzip'd tar that unpacks to exactly those files.
import assert from "node:assert/strict";
import { mkdir, mkdtemp, readdir, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { pipeline } from "node:stream/promises";
import { test } from "node:test";
import { createGunzip } from "node:zlib";
import { extract } from "tar-fs";
import { packSource } from "../../src/cli/upload.js";
import { BerthError } from "../../src/errors.js";

async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries.filter((entry) => entry.isFile()).map((entry) => relative(dir, join(entry.parentPath, entry.name))).sort();
}

test("--upload sends what .dockerignore lets through, never .git", async () => {
  const source = await mkdtemp(join(tmpdir(), "berth-upload-"));
  const files: Record<string, string> = {
    "Dockerfile": "FROM berth-node:20\n",
    ".dockerignore": "secret.env\nnode_modules\nlogs/*.log\n!logs/keep.log\n",
    "app.js": "console.log('hi')\n",
    "secret.env": "TOKEN=do-not-send\n",
    "node_modules/left-pad/index.js": "module.exports = 1\n",
    "logs/a.log": "noise\n",
    "logs/keep.log": "kept by the negation\n",
    ".git/config": "[core]\n",
    "src/lib/util.js": "exports.x = 1\n",
  };
  for (const [path, text] of Object.entries(files)) {
    await mkdir(join(source, path, ".."), { recursive: true });
    await writeFile(join(source, path), text);
  }
  const expected = [".dockerignore", "Dockerfile", "app.js", "logs/keep.log", "src/lib/util.js"];

  const packed = await packSource(source);
  assert.equal(packed.files, expected.length);
  const unpacked = await mkdtemp(join(tmpdir(), "berth-unpacked-"));
  await pipeline(packed.stream, createGunzip(), extract(unpacked));
  assert.deepEqual(await filesUnder(unpacked), expected);
  assert.equal(await readFile(join(unpacked, "logs/keep.log"), "utf8"), files["logs/keep.log"]);
});

test("--upload: a .dockerignore of \"*\" leaves only itself (and no .git); a file is refused", async () => {
  const empty = await mkdtemp(join(tmpdir(), "berth-upload-"));
  await writeFile(join(empty, ".dockerignore"), "*\n");
  await mkdir(join(empty, ".git"));
  await writeFile(join(empty, ".git", "HEAD"), "ref: refs/heads/main\n");
  // .dockerignore itself always goes, as Docker's CLI sends it; with "*" nothing else does.
  assert.equal((await packSource(empty)).files, 1);
  await assert.rejects(packSource(join(empty, ".dockerignore")), (error: unknown) => error instanceof BerthError && /not a directory/.test(error.message));
});
