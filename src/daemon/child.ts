// berthd's child processes: a module beside this one, given one input over IPC, answering with
// progress lines and one outcome (a value, or a catalogue error's code, message and hint).
// `runChild` is berthd's side; `serveParent` the child's. A child exits once it has answered,
// and at once if berthd goes away (the IPC channel closes).
import { fork, type ChildProcess } from "node:child_process";
import { BerthError } from "../errors.js";

export type ChildMessage =
  | { type: "progress"; line: string }
  | { type: "result"; value: unknown }
  | { type: "error"; error: { code: BerthError["code"]; message: string; hint?: string } };

/** Compiled, a module beside this file is .js; run from source (tsx), .ts, loaded through tsx. */
function siblingModule(name: string): { url: URL; execArgv: string[] } {
  const isSource = import.meta.url.endsWith(".ts");
  return { url: new URL(`./${name}.${isSource ? "ts" : "js"}`, import.meta.url), execArgv: isSource ? ["--import", "tsx"] : [] };
}

/**
 * Runs the module `name` in a child process with `input`. The child runs at node's defaults:
 * berthd's memory-saving flags would slow its work. `started` hears of the process as soon as it exists.
 */
export function runChild<T>(name: string, input: unknown, progress: (line: string) => void, started?: (child: ChildProcess) => void): Promise<T> {
  const { url, execArgv } = siblingModule(name);
  const child = fork(url, [], { execArgv, serialization: "advanced", stdio: ["ignore", "inherit", "inherit", "ipc"] });
  started?.(child);
  return new Promise<T>((resolve, reject) => {
    let outcome: { value: T } | { error: BerthError } | undefined;
    let isSettled = false;
    const settle = (ended: string) => {
      if (isSettled) return;
      isSettled = true;
      if (!outcome) reject(new BerthError("INTERNAL", `the ${name} process ended (${ended}) without an outcome`));
      else if ("error" in outcome) reject(outcome.error);
      else resolve(outcome.value);
    };
    child.on("message", (message: ChildMessage) => {
      if (message.type === "progress") progress(message.line);
      else if (message.type === "result") outcome = { value: message.value as T };
      else outcome = { error: new BerthError(message.error.code, message.error.message, message.error.hint) };
    });
    // A child that could not be started at all emits "error" and no "exit".
    child.once("error", (error) => child.pid === undefined && settle(`not started: ${error.message}`));
    child.once("exit", (code, signal) => settle(signal ?? `exit code ${code}`));
    child.send(input as object);
  });
}

/**
 * The child's side: answers the one input berthd sends with `work`'s outcome, then exits.
 * SIGTERM and SIGINT are berthd's to handle (a terminal's Ctrl-C and systemd reach the whole
 * group): the work runs on through berthd's grace period.
 */
export function serveParent<I>(work: (input: I, progress: (line: string) => void) => Promise<unknown>): void {
  if (!process.send) return;
  const send = (message: ChildMessage): Promise<void> => new Promise((resolve) => process.send!(message, undefined, {}, () => resolve()));
  process.on("disconnect", () => process.exit(70));
  process.on("SIGTERM", () => undefined);
  process.on("SIGINT", () => undefined);
  process.once("message", (input: I) => {
    work(input, (line) => void send({ type: "progress", line }))
      .then(
        (value) => send({ type: "result", value }),
        (error: unknown) => {
          const known = error instanceof BerthError;
          return send({ type: "error", error: { code: known ? error.code : "INTERNAL", message: (error as Error).message ?? String(error), ...(known && error.hint ? { hint: error.hint } : {}) } });
        },
      )
      // Everything is sent: the engine's and PostgreSQL's sockets need not be closed one by one.
      .finally(() => process.exit(0));
  });
}
