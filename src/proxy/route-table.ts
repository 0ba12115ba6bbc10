// The route table of a generation: every environment's routes as data, which the proxy's router
// (router-lua.ts) reads without an nginx reload. One line per route, fields separated by tabs:
//
//   berth-routes  1  <token>  <config>                      first line: format, version, hashes
//   <app>  <env>  prefix|regex  <path>  <upstream>  <limit class>
//
// Routes keep their plan order: among regexes it is the order they are tried in. <config> is
// the hash of the generation's other files: a worker adopts a table only when it was rendered
// for the configuration the worker runs. <token> covers both, so it changes with any route.
import { createHash } from "node:crypto";
import type { EnvironmentPlan } from "../plan/types.js";

export const ROUTE_TABLE_FORMAT = "berth-routes\t1";

export interface RouteTable {
  text: string;
  token: string;
}

export function renderRouteTable(environments: EnvironmentPlan[], configHash: string): RouteTable {
  const body = environments
    .flatMap((environment) =>
      environment.routes.map((route) =>
        [environment.app, environment.env, route.kind, escapeField(route.path), route.upstream, route.limit.name].join("\t"),
      ),
    )
    .map((line) => `${line}\n`)
    .join("");
  const token = createHash("sha256").update(`${configHash}\0${body}`).digest("hex").slice(0, 16);
  return { text: `${ROUTE_TABLE_FORMAT}\t${token}\t${configHash}\n${body}`, token };
}

/** A path may hold any character; tabs, line breaks and backslashes are escaped so each route stays one line of six fields. */
function escapeField(text: string): string {
  return text.replace(/[\\\t\n\r]/g, (char) => ({ "\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r" })[char]!);
}
