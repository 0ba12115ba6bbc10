// A tiny router on plain node:http: request ids, JSON bodies with limits, access logs,
// and a graceful close that lets in-flight requests finish.
import { randomUUID } from "node:crypto";

export class HttpError extends Error {
  /**
   * @param {number} status
   * @param {string} code stable machine-readable code, e.g. "invalid_input"
   * @param {string} message a sentence a person can act on
   * @param {Array<{field: string, message: string}>} [details]
   */
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

// Accept the proxy's id when it looks like one; anything else could inject text into logs.
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

export function requestIdOf(req) {
  const header = req.headers["x-request-id"];
  const value = Array.isArray(header) ? header[0] : header;
  return value && REQUEST_ID.test(value) ? value : randomUUID();
}

/**
 * Reads a JSON request body of at most `limit` bytes.
 * @returns {Promise<unknown>}
 */
export async function readJson(req, limit = 16 * 1024) {
  const type = (req.headers["content-type"] ?? "").split(";")[0].trim().toLowerCase();
  if (type !== "application/json") {
    throw new HttpError(415, "unsupported_media_type", `Send the body as JSON with "Content-Type: application/json" (got "${type || "none"}").`);
  }
  const declared = Number(req.headers["content-length"]);
  if (declared > limit) {
    throw new HttpError(413, "body_too_large", `The request body is ${declared} bytes; the limit is ${limit}.`);
  }
  const text = await new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    const onData = (chunk) => {
      size += chunk.length;
      if (size <= limit) {
        chunks.push(chunk);
        return;
      }
      // Stop keeping data but let it flow: the 413 goes out, then the connection closes
      // (see writeReply), instead of a reset that the client would see as a network error.
      req.off("data", onData);
      reject(new HttpError(413, "body_too_large", `The request body is larger than the limit of ${limit} bytes.`));
    };
    req.on("data", onData);
    req.once("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.once("error", reject);
  });
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new HttpError(400, "invalid_json", `The request body is not valid JSON: ${err.message}`);
  }
}

/** Rejects when `promise` has not settled within `ms`. */
export function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * A route: { method, path: string | RegExp, handler(ctx) => reply, quiet? }.
 * A reply: { status?, json?, text?, headers? }. `quiet` routes (health checks) log at debug.
 * RegExp paths pass their named groups to the handler as ctx.params.
 */
export function createRequestListener({ routes, log, isDraining = () => false }) {
  return (req, res) => {
    const started = process.hrtime.bigint();
    const requestId = requestIdOf(req);
    const url = new URL(req.url ?? "/", "http://internal");
    const reqLog = log.child({ request_id: requestId });
    const match = matchRoute(routes, req.method ?? "GET", url.pathname);

    // "close" also fires when the client hangs up before the response is complete.
    res.once("close", () => {
      const fields = {
        method: req.method,
        path: url.pathname,
        status: res.statusCode,
        duration_ms: Number((process.hrtime.bigint() - started) / 1000n) / 1000,
      };
      if (!res.writableFinished) fields.aborted = true;
      if (match.route?.quiet && res.statusCode < 400) reqLog.debug("request", fields);
      else reqLog.info("request", fields);
    });

    const ctx = { req, url, params: match.params, log: reqLog, requestId };
    handle(match, ctx).then(
      (reply) => writeReply(res, reply, requestId, isDraining()),
      (err) => {
        if (err instanceof HttpError) {
          writeReply(res, errorReply(err), requestId, isDraining());
          return;
        }
        reqLog.error("request failed", { error: err?.message ?? String(err) });
        const internal = new HttpError(500, "internal", "The server failed to handle the request; its log has the cause.");
        writeReply(res, errorReply(internal), requestId, isDraining());
      },
    );
  };
}

async function handle(match, ctx) {
  if (!match.route) {
    if (match.allowed.length > 0) {
      const err = new HttpError(405, "method_not_allowed", `${ctx.req.method} is not allowed on ${ctx.url.pathname}; use ${match.allowed.join(" or ")}.`);
      err.headers = { Allow: match.allowed.join(", ") };
      throw err;
    }
    throw new HttpError(404, "not_found", `No route for ${ctx.req.method} ${ctx.url.pathname}.`);
  }
  return match.route.handler(ctx);
}

function matchRoute(routes, method, pathname) {
  const allowed = [];
  for (const route of routes) {
    let params = {};
    if (typeof route.path === "string") {
      if (route.path !== pathname) continue;
    } else {
      const m = route.path.exec(pathname);
      if (!m) continue;
      params = { ...m.groups };
    }
    // HEAD is answered by the GET handler; node omits the body.
    if (route.method === method || (method === "HEAD" && route.method === "GET")) {
      return { route, params, allowed };
    }
    allowed.push(route.method);
  }
  return { route: undefined, params: {}, allowed };
}

function errorReply(err) {
  const json = { error: err.code, message: err.message };
  if (err.details) json.details = err.details;
  return { status: err.status, json, headers: err.headers };
}

function writeReply(res, reply, requestId, isDraining) {
  if (res.headersSent) return;
  const headers = { "Cache-Control": "no-store", ...reply.headers, "X-Request-ID": requestId };
  let payload;
  if (reply.text !== undefined) {
    payload = reply.text;
    headers["Content-Type"] ??= "text/plain; charset=utf-8";
  } else {
    payload = JSON.stringify(reply.json ?? {}) + "\n";
    headers["Content-Type"] = "application/json; charset=utf-8";
  }
  headers["Content-Length"] = Buffer.byteLength(payload);
  // While draining, close each connection after its response so keep-alive clients
  // (the proxy) move to another replica instead of holding this process open. A body
  // left unread (too large, say) cannot be skipped reliably either.
  if (isDraining || !res.req.complete) headers.Connection = "close";
  res.writeHead(reply.status ?? 200, headers);
  res.end(payload);
}

/**
 * Stops accepting connections, closes idle keep-alive connections and resolves once
 * every in-flight request has finished; rejects after `timeoutMs`.
 */
export function closeGracefully(server, timeoutMs) {
  // A keep-alive connection turns idle when its last response is sent; sweep those
  // until the server has none left, or close() would wait for the client to hang up.
  const sweep = setInterval(() => server.closeIdleConnections(), 50);
  return withTimeout(
    new Promise((resolve, reject) => {
      server.close((err) => (err ? reject(err) : resolve()));
      server.closeIdleConnections();
    }),
    timeoutMs,
    "in-flight requests",
  ).finally(() => clearInterval(sweep));
}
