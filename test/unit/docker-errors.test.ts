// Engine failures become catalogue errors that say what to do.
import assert from "node:assert/strict";
import { test } from "node:test";
import { engineError } from "../../src/host/docker.js";

const cases: { name: string; failure: object; code: string; message: RegExp }[] = [
  { name: "socket missing", failure: { code: "ENOENT", message: "connect ENOENT /var/run/docker.sock" }, code: "ENGINE_UNAVAILABLE", message: /creating x: the Docker engine is not reachable \(ENOENT/ },
  { name: "socket refused", failure: { code: "ECONNREFUSED" }, code: "ENGINE_UNAVAILABLE", message: /not reachable \(ECONNREFUSED/ },
  { name: "disk full", failure: { statusCode: 500, json: { message: "write /var/lib/docker/tmp/x: no space left on device" } }, code: "DISK_FULL", message: /creating x: the disk is full/ },
  { name: "port taken", failure: { statusCode: 500, json: { message: "driver failed programming external connectivity: Bind for 127.0.0.1:8080 failed: port is already allocated" } }, code: "PORT_TAKEN", message: /a port is already taken/ },
  { name: "image missing", failure: { statusCode: 404, json: { message: "No such image: nope:1" } }, code: "IMAGE_MISSING", message: /image not found \(No such image: nope:1\)/ },
  { name: "anything else", failure: { statusCode: 500, json: { message: "something odd" } }, code: "INTERNAL", message: /^creating x: something odd$/ },
];

for (const { name, failure, code, message } of cases) {
  test(`engine error: ${name}`, () => {
    const error = engineError(failure, "creating x");
    assert.equal(error.code, code);
    assert.match(error.message, message);
  });
}
