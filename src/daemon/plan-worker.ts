// Reads the spec and the API contract in a worker thread and hands back plain data: the
// plan and the contract document. The spec's validator (zod) and the YAML parser stay in
// the worker's isolate and go when it exits, so berthd does not carry them while it idles.
import { parentPort, workerData } from "node:worker_threads";
import { readContractDocument } from "../api/contract.js";
import { BerthError } from "../errors.js";
import { planPlatform } from "../plan/plan.js";
import { loadSpec } from "../spec/index.js";

const { specPath } = workerData as { specPath: string };
try {
  const { root, spec } = await loadSpec(specPath);
  parentPort!.postMessage({ plan: planPlatform(spec, { root }), document: readContractDocument() });
} catch (error) {
  const known = error instanceof BerthError;
  parentPort!.postMessage({ error: { code: known ? error.code : "INTERNAL", message: (error as Error).message, hint: known ? error.hint : undefined } });
}
