// dockerode loads, when it is first required, two transports berth does not use: SSH to a
// remote engine (ssh2) and BuildKit sessions (gRPC + protobuf). Together they are about
// 1.5 MB of JavaScript, 11 MB of resident memory and a tenth of a second of start-up.
// berth talks to the local socket and builds with the classic builder, so both modules
// are loaded on first call instead: each export is a function, replaced here by a function
// that loads the real one when called. Behaviour is unchanged if they are ever used.
// This module must be imported before dockerode.
import Module from "node:module";

const DEFERRED = [/[\\/]dockerode[\\/]lib[\\/]session\.js$/, /[\\/]docker-modem[\\/]lib[\\/]ssh\.js$/];

type Load = (request: string, parent: unknown, isMain: boolean) => unknown;
const loader = Module as unknown as { _load: Load; _resolveFilename: (request: string, parent: unknown, isMain: boolean) => string };
const load = loader._load;

loader._load = function (this: unknown, request: string, parent: unknown, isMain: boolean): unknown {
  if (request.startsWith("./") && (request.endsWith("session") || request.endsWith("ssh"))) {
    const filename = loader._resolveFilename(request, parent, isMain);
    if (DEFERRED.some((pattern) => pattern.test(filename))) {
      let real: ((...args: unknown[]) => unknown) | undefined;
      return function (this: unknown, ...args: unknown[]): unknown {
        real ??= load.call(loader, request, parent, isMain) as (...args: unknown[]) => unknown;
        return real.apply(this, args);
      };
    }
  }
  return load.call(this, request, parent, isMain);
};
