// berthd's HTTP layer: route by the contract, authenticate the bearer token, validate the
// parameters and body, run the operation's handler, validate the answer against the
// contract, and write every mutation (refused ones too) to the audit log.
import { createServer as createHttpsServer, type ServerOptions } from "node:https";
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Logger } from "pino";
import { auditResult, type AccessStore, type Token } from "../state/access.js";
import { fieldErrors, type Contract, type Operation } from "./contract.js";
import { docsPage } from "./docs.js";
import { refuse, toProblem, type Problem } from "./problem.js";

/** The largest JSON body accepted; secrets are at most 64 KiB. */
export const MAX_JSON_BYTES = 256 * 1024;

export interface RequestContext {
  token: Token;
  params: Record<string, unknown>;
  query: Record<string, unknown>;
  body: unknown;
  /** The raw request, for operations that stream their body (uploads). */
  request: IncomingMessage;
  /** The client's address, for the audit log. */
  source: string;
  /** What the audit log records as the target: "platform", "app", "app/env", "token:id". */
  setTarget(target: string): void;
}

export type Reply =
  | { status: number; body: unknown; headers?: Record<string, string> }
  /** A streamed answer (Server-Sent Events); the handler owns the response. */
  | { stream: (response: ServerResponse) => void };

export type Handler = (context: RequestContext) => Promise<Reply>;

export interface ApiServerOptions {
  contract: Contract;
  handlers: Record<string, Handler>;
  access: AccessStore;
  log: Logger;
  /** TLS key and certificate; plain HTTP without (tests of the HTTP layer only). */
  tls?: Pick<ServerOptions, "key" | "cert">;
}

function sendJson(response: ServerResponse, status: number, body: unknown, type = "application/json", headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  response.writeHead(status, { "content-type": type, "content-length": Buffer.byteLength(text), "cache-control": "no-store", ...headers });
  response.end(text);
}

function sendProblem(response: ServerResponse, problem: Problem, headers: Record<string, string> = {}): void {
  sendJson(response, problem.status, problem, "application/problem+json", headers);
}

async function readJsonBody(request: IncomingMessage): Promise<unknown> {
  const declared = Number(request.headers["content-length"] ?? 0);
  if (declared > MAX_JSON_BYTES) throw refuse(413, "body-too-large", `the body is ${declared} bytes; the limit is ${MAX_JSON_BYTES}`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_JSON_BYTES) throw refuse(413, "body-too-large", `the body is over the limit of ${MAX_JSON_BYTES} bytes`);
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString("utf8");
  if (text.trim() === "") throw refuse(400, "invalid-request", "the request needs a JSON body", { errors: [{ path: "body", message: "is required" }] });
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    throw refuse(400, "malformed-json", `the body is not valid JSON: ${(error as Error).message}`);
  }
}

function mediaType(request: IncomingMessage): string {
  return (request.headers["content-type"] ?? "").split(";")[0]!.trim().toLowerCase();
}

function bearer(request: IncomingMessage, access: AccessStore): Token {
  const header = request.headers.authorization;
  if (!header) throw refuse(401, "unauthenticated", "no token: send Authorization: Bearer <token>", { hint: "Set BERTH_TOKEN, or token: in ~/.config/berth/config.yaml." });
  const match = /^Bearer\s+(\S+)$/i.exec(header);
  const token = match ? access.authenticate(match[1]!) : undefined;
  if (!token) throw refuse(401, "unauthenticated", "the token is not valid (unknown, malformed or revoked)");
  return token;
}

/** The operation's documented answer for this status, or an error if the handler drifted. */
function checkReply(operation: Operation, status: number, body: unknown): string | undefined {
  const response = operation.responses.get(String(status)) ?? (status >= 400 ? operation.responses.get("default") : undefined);
  if (!response) return `status ${status} is not documented for ${operation.id}`;
  if (response.validate && !response.validate(body)) {
    return `the ${status} answer of ${operation.id} does not match the contract: ${fieldErrors("response", response.validate.errors).map((e) => `${e.path} ${e.message}`).join("; ")}`;
  }
  return undefined;
}

export function createApiServer(options: ApiServerOptions): Server {
  const { contract, handlers, access, log } = options;
  const missing = contract.operations.filter((o) => !handlers[o.id]).map((o) => o.id);
  const extra = Object.keys(handlers).filter((id) => !contract.operations.some((o) => o.id === id));
  if (missing.length > 0 || extra.length > 0) {
    throw new Error(`handlers and contract differ: missing ${missing.join(", ") || "none"}; not in the contract ${extra.join(", ") || "none"}`);
  }
  const documentJson = JSON.stringify(contract.document);
  const docs = docsPage(contract.document);

  const handle = async (request: IncomingMessage, response: ServerResponse): Promise<void> => {
    const url = new URL(request.url ?? "/", "http://berthd");
    const method = request.method ?? "GET";
    if (method === "GET" && url.pathname === "/openapi.json") {
      response.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(documentJson) });
      response.end(documentJson);
      return;
    }
    if (method === "GET" && (url.pathname === "/docs" || url.pathname === "/")) {
      response.writeHead(200, { "content-type": "text/html; charset=utf-8", "content-length": Buffer.byteLength(docs) });
      response.end(docs);
      return;
    }
    const routed = contract.route(method, url.pathname);
    if (!routed) return sendProblem(response, toProblem(refuse(404, "no-such-route", `no API operation at ${url.pathname}`, { hint: "See /openapi.json or /docs." })));
    if ("allowed" in routed) {
      return sendProblem(response, toProblem(refuse(405, "method-not-allowed", `${method} is not allowed on ${url.pathname}; allowed: ${routed.allowed.join(", ")}`)), { allow: routed.allowed.join(", ") });
    }
    const { operation } = routed;
    const source = request.socket.remoteAddress ?? "unknown";
    let token: Token | undefined;
    let target = typeof routed.params.app === "string" ? (typeof routed.params.env === "string" ? `${routed.params.app}/${routed.params.env}` : routed.params.app) : "platform";
    let status = 500;
    const started = process.hrtime.bigint();
    try {
      token = bearer(request, access);
      const params: Record<string, unknown> = { ...routed.params };
      if (!operation.params(params)) throw refuse(400, "invalid-request", "invalid path parameter", { errors: fieldErrors("path", operation.params.errors) });
      const query: Record<string, unknown> = Object.fromEntries(url.searchParams);
      if (new Set(url.searchParams.keys()).size !== [...url.searchParams.keys()].length) throw refuse(400, "invalid-request", "a query parameter is repeated");
      if (!operation.query(query)) throw refuse(400, "invalid-request", "invalid query parameter", { errors: fieldErrors("query", operation.query.errors) });
      let body: unknown;
      if (operation.body) {
        if (mediaType(request) !== "application/json") throw refuse(415, "unsupported-media-type", `send the body as application/json (got ${mediaType(request) || "none"})`);
        body = await readJsonBody(request);
        if (!operation.body(body)) throw refuse(400, "invalid-request", "the body does not match the API contract", { errors: fieldErrors("body", operation.body.errors) });
      } else if (operation.bodyTypes.length > 0) {
        if (!operation.bodyTypes.includes(mediaType(request))) throw refuse(415, "unsupported-media-type", `send the body as ${operation.bodyTypes.join(" or ")} (got ${mediaType(request) || "none"})`);
      } else if (Number(request.headers["content-length"] ?? 0) > 0 || request.headers["transfer-encoding"]) {
        throw refuse(400, "invalid-request", `${operation.id} takes no request body`);
      }
      const reply = await handlers[operation.id]!({ token, params, query, body, request, source, setTarget: (t) => (target = t) });
      if ("stream" in reply) {
        status = 200;
        reply.stream(response);
        return;
      }
      const drift = checkReply(operation, reply.status, reply.body);
      if (drift) {
        log.error({ operation: operation.id }, drift);
        status = 500;
        return sendProblem(response, toProblem(new Error(drift)));
      }
      status = reply.status;
      sendJson(response, reply.status, reply.body, "application/json", reply.headers);
    } catch (error) {
      const problem = toProblem(error);
      if (problem.status >= 500) log.error({ err: error, operation: operation.id }, "request failed");
      status = problem.status;
      const drift = checkReply(operation, problem.status, problem);
      if (drift) log.error({ operation: operation.id }, drift);
      // Whatever the handler read, the rest of a refused body is discarded.
      request.resume();
      sendProblem(response, problem, problem.status === 401 ? { "www-authenticate": 'Bearer realm="berthd"' } : {});
    } finally {
      if (operation.isMutation) {
        access.audit({
          actor: token?.name ?? "anonymous",
          tokenId: token?.id ?? null,
          operation: operation.id,
          target,
          source,
          status,
          result: auditResult(status),
        });
      }
      log.info({ method, path: url.pathname, operation: operation.id, status, ms: Number(process.hrtime.bigint() - started) / 1e6, token: token?.id }, "request");
    }
  };

  const listener = (request: IncomingMessage, response: ServerResponse) => {
    handle(request, response).catch((error: unknown) => {
      log.error({ err: error }, "request handling crashed");
      if (!response.headersSent) sendProblem(response, toProblem(error));
      else response.destroy();
    });
  };
  const server = options.tls ? createHttpsServer({ ...options.tls }, listener) : createHttpServer(listener);
  server.requestTimeout = 15 * 60_000;
  server.headersTimeout = 30_000;
  return server;
}
