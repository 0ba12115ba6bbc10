// Reads the spec and the API contract in a child process of berthd and hands back plain
// data: the plan and the contract document. The spec's validator (zod) and the YAML parser
// stay in that process and go when it exits, so berthd does not carry them while it idles.
import { readContractDocument } from "../api/contract.js";
import { planPlatform } from "../plan/plan.js";
import { loadSpec } from "../spec/index.js";
import { serveParent } from "./child.js";

serveParent(async ({ specPath }: { specPath: string }) => {
  const { root, spec } = await loadSpec(specPath);
  return { plan: planPlatform(spec, { root }), document: readContractDocument() };
});
