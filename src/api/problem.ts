// Errors as application/problem+json (RFC 9457): a type, a title, the status, what happened
// (detail), what to do (hint) and, for invalid requests, each offending field.
import { BerthError, ERROR_CODES } from "../errors.js";
import type { FieldError } from "./contract.js";

export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  hint?: string;
  errors?: FieldError[];
}

const TITLES: Record<number, string> = {
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  409: "Conflict",
  413: "Content Too Large",
  415: "Unsupported Media Type",
  422: "Unprocessable Content",
  424: "Failed Dependency",
  500: "Internal Server Error",
  502: "Bad Gateway",
  503: "Service Unavailable",
  507: "Insufficient Storage",
};

export function problem(status: number, kind: string, detail: string, extra: { hint?: string; errors?: FieldError[] } = {}): Problem {
  return { type: `https://berth.dev/problems/${kind}`, title: TITLES[status] ?? "Error", status, detail, ...extra };
}

/** A thrown error as the problem the client sees; internal errors keep their details in the log. */
export function toProblem(error: unknown): Problem {
  if (error instanceof ApiError) return error.problem;
  if (error instanceof BerthError) {
    return problem(ERROR_CODES[error.code].status, error.code.toLowerCase().replace(/_/g, "-"), error.message, error.hint ? { hint: error.hint } : {});
  }
  return problem(500, "internal", "berthd failed to handle the request; see its log");
}

/** An HTTP-level refusal (auth, scope, media type, size, validation). */
export class ApiError extends Error {
  constructor(readonly problem: Problem) {
    super(problem.detail);
    this.name = "ApiError";
  }
}

export const refuse = (status: number, kind: string, detail: string, extra: { hint?: string; errors?: FieldError[] } = {}): ApiError =>
  new ApiError(problem(status, kind, detail, extra));
