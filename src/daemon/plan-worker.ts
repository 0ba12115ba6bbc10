// Reads the spec and the API contract in a child process of berthd and hands back plain
// data: the plan and the contract document. The spec's validator (zod) and the YAML parser
// stay in that process and go when it exits, so berthd does not carry them while it idles
// (a worker thread would leave its heap's pages behind in berthd's malloc arena).
import { readContractDocument } from "../api/contract.js";
import { BerthError } from "../errors.js";
import { planPlatform } from "../plan/plan.js";
import { loadSpec } from "../spec/index.js";

const send = (message: unknown): Promise<void> => new Promise((resolve) => process.send!(message, undefined, {}, () => resolve()));

if (process.send) {
  process.on("disconnect", () => process.exit(70));
  process.once("message", ({ specPath }: { specPath: string }) => {
    loadSpec(specPath)
      .then(({ root, spec }) => send({ plan: planPlatform(spec, { root }), document: readContractDocument() }))
      .catch((error: unknown) => {
        const known = error instanceof BerthError;
        return send({ error: { code: known ? error.code : "INTERNAL", message: (error as Error).message, hint: known ? error.hint : undefined } });
      })
      .finally(() => process.exit(0));
  });
}
