// One catalogue of berth's errors: each has a stable code, says what happened, and what to do.
// Only the CLI and API layers map codes to exit codes and HTTP statuses.

export const ERROR_CODES = {
  SPEC_NOT_FOUND: { exit: 66, status: 404 },
  SPEC_INVALID: { exit: 65, status: 422 },
  BAD_ARGUMENT: { exit: 64, status: 400 },
  NOT_FOUND: { exit: 66, status: 404 },
  CONFLICT: { exit: 75, status: 409 },
  UNAUTHORIZED: { exit: 77, status: 401 },
  FORBIDDEN: { exit: 77, status: 403 },
  DAEMON_UNAVAILABLE: { exit: 69, status: 503 },
  ENGINE_UNAVAILABLE: { exit: 69, status: 503 },
  IMAGE_MISSING: { exit: 69, status: 424 },
  PORT_TAKEN: { exit: 69, status: 409 },
  DISK_FULL: { exit: 74, status: 507 },
  PROXY_CONFIG_REJECTED: { exit: 70, status: 500 },
  DATABASE_FAILED: { exit: 70, status: 502 },
  BUILD_FAILED: { exit: 70, status: 500 },
  INTERNAL: { exit: 70, status: 500 },
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export class BerthError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    /** The next thing to do, shown after the message. */
    readonly hint?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "BerthError";
  }
}
