// berthd's receiving side of `deploy --upload`: a gzip'd tar unpacked under the state
// directory, capped as sent and as unpacked (a small gzip of zeros cannot fill the disk), and
// refused with nothing left behind. Real archives through the real function; the request is a
// stream with the headers an HTTP request would carry.
import assert from "node:assert/strict";
import { mkdir, mkdtemp, readdir, readFile, writeFile } from "node:fs/promises";
import type { IncomingMessage } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { buffer } from "node:stream/consumers";
import { test } from "node:test";
import { gzipSync } from "node:zlib";
import { pack } from "tar-fs";
import { ApiError } from "../../src/api/problem.js";
import { receiveUpload, uploadsDir } from "../../src/api/uploads.js";

/** A tar of `files` (name → size in bytes of zeros, or text). */
async function tarOf(files: Record<string, number | string>): Promise<Buffer> {
  const dir = await mkdtemp(join(tmpdir(), "berth-tar-"));
  for (const [name, content] of Object.entries(files)) {
    await mkdir(join(dir, name, ".."), { recursive: true });
    await writeFile(join(dir, name), typeof content === "number" ? Buffer.alloc(content) : content);
  }
  return buffer(pack(dir));
}

function requestOf(body: Buffer): IncomingMessage {
  return Object.assign(Readable.from([body]), { headers: { "content-length": String(body.length) } }) as unknown as IncomingMessage;
}

const refusedWith = (status: number, detail: RegExp) => (error: unknown) => error instanceof ApiError && error.problem.status === status && detail.test(error.problem.detail);

test("an upload within the limits is unpacked", async () => {
  const stateDir = await mkdtemp(join(tmpdir(), "berth-uploads-"));
  const body = gzipSync(await tarOf({ "Dockerfile": "FROM berth-node:20\n", "src/app.js": "1\n" }));
  const upload = await receiveUpload(requestOf(body), stateDir, true, { bytes: 1024 * 1024, unpackedBytes: 1024 * 1024 });
  assert.deepEqual([upload.files, upload.bytes], [2, body.length]);
  assert.equal(await readFile(join(uploadsDir(stateDir), upload.id, "src/app.js"), "utf8"), "1\n");
});

test("a gzip that unpacks past the limit is refused with 413 and leaves nothing", async () => {
  const stateDir = await mkdtemp(join(tmpdir(), "berth-uploads-"));
  // 8 MB of zeros gzip to a few KB: under the limit as sent, far over it unpacked.
  const body = gzipSync(await tarOf({ "zeros.bin": 8 * 1024 * 1024 }));
  assert.ok(body.length < 64 * 1024, `${body.length} bytes sent`);
  await assert.rejects(receiveUpload(requestOf(body), stateDir, true, { bytes: 1024 * 1024, unpackedBytes: 1024 * 1024 }), refusedWith(413, /unpacks to over 1048576 bytes/));
  assert.deepEqual(await readdir(uploadsDir(stateDir)), [], "the partial upload was removed");
});

test("an upload over the limit as sent is refused with 413, declared or not", async () => {
  const stateDir = await mkdtemp(join(tmpdir(), "berth-uploads-"));
  const body = await tarOf({ "big.bin": 256 * 1024 });
  const limits = { bytes: 64 * 1024, unpackedBytes: 1024 * 1024 };
  await assert.rejects(receiveUpload(requestOf(body), stateDir, false, limits), refusedWith(413, /is \d+ bytes; the limit is 65536/));
  const undeclared = Object.assign(Readable.from([body]), { headers: {} }) as unknown as IncomingMessage;
  await assert.rejects(receiveUpload(undeclared, stateDir, false, limits), refusedWith(413, /over the limit of 65536 bytes/));
  assert.deepEqual(await readdir(uploadsDir(stateDir)), []);
});
