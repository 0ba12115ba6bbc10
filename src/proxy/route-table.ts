// The route table of a generation: every environment's routes, and the addresses each upstream
// sends to, as data the proxy's router (router-lua.ts) reads without an nginx reload. One line
// per route or upstream, fields separated by tabs:
//
//   berth-routes  2  <token>  <config>                               first line: format, version, hashes
//   route  <app>  <env>  prefix|regex  <path>  <upstream>  <limit>  a route, in plan order
//   upstream  <name>  <ip:port> <ip:port> …|-                        an upstream's addresses ("-": none)
//
// Among regexes, plan order is the order they are tried in. <config> is the hash of the
// generation's other files: a worker adopts a table only when it was rendered for the
// configuration the worker runs. <token> covers both, so it changes with any route or address:
// a deploy's switch, or a restarted container's new address, is a new table and no reload.
import { createHash } from "node:crypto";
import { BerthError } from "../errors.js";
import { names } from "../plan/names.js";
import type { EnvironmentPlan } from "../plan/types.js";

export const ROUTE_TABLE_FORMAT = "berth-routes\t2";

export interface RouteTable {
  text: string;
  token: string;
}

/** `upstreams`: "ip:port" of the healthy containers, by upstream name; every component of every environment gets a line. */
export function renderRouteTable(environments: EnvironmentPlan[], upstreams: Record<string, string[]>, configHash: string): RouteTable {
  const routes = environments.flatMap((environment) =>
    environment.routes.map((route) =>
      ["route", environment.app, environment.env, route.kind, escapeField(route.path), route.upstream, route.limit.name].join("\t"),
    ),
  );
  const addresses = environments.flatMap((environment) =>
    environment.components.map((component) => {
      const name = names.upstream(environment.app, environment.env, component.name);
      return ["upstream", name, upstreamAddresses(name, upstreams[name] ?? [])].join("\t");
    }),
  );
  const body = [...routes, ...addresses].map((line) => `${line}\n`).join("");
  const token = createHash("sha256").update(`${configHash}\0${body}`).digest("hex").slice(0, 16);
  return { text: `${ROUTE_TABLE_FORMAT}\t${token}\t${configHash}\n${body}`, token };
}

/** Sorted and without repeats, so the same set of containers renders the same bytes and changes nothing. */
function upstreamAddresses(upstream: string, addresses: string[]): string {
  const checked = [...new Set(addresses)].sort().map((address) => checkedAddress(upstream, address));
  return checked.length > 0 ? checked.join(" ") : "-";
}

function checkedAddress(upstream: string, address: string): string {
  if (/^(\d{1,3}(\.\d{1,3}){3}|\[[0-9a-fA-F:.]+\]):\d{1,5}$/.test(address)) return address;
  throw new BerthError(
    "INTERNAL",
    `observed address ${JSON.stringify(address)} of upstream ${upstream} is not "ip:port"`,
    "This is a bug in berth's container inspection; report it.",
  );
}

/** A path may hold any character; tabs, line breaks and backslashes are escaped so each route stays one line. */
function escapeField(text: string): string {
  return text.replace(/[\\\t\n\r]/g, (char) => ({ "\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r" })[char]!);
}
