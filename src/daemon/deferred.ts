// How a reconcile pass says it waits for a deploy running beside berthd: the hint of its
// CONFLICT error (code, message and hint are what cross from a job process). In a module of
// its own so that berthd's process can match it without loading the job runner's modules.
export const RECONCILE_DEFERRED = "The pass runs again once that deploy is over.";
