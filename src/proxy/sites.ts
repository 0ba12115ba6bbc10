// One site file per app: the server blocks of each environment, whose routed location asks the
// router (router-lua.ts) for the upstream: the routes and the containers' addresses are in the
// route table, so changing them changes no site file. An environment is served over
// TLS once it has a certificate; until then (or with TLS off) its app answers on port 80, so a
// new environment works before ACME has run.
import type { EnvironmentPlan, ProxyPlan } from "../plan/types.js";
import { securityHeaders } from "./includes.js";
import { pageFiles, type ProxyPaths } from "./layout.js";
import { BACKENDS_UPSTREAM, requestIdLine } from "./nginx-conf.js";
import { block, word, renderConfig, type ConfigBlock, type ConfigLine } from "./syntax.js";

export interface ServedEnvironment {
  environment: EnvironmentPlan;
  /** Certificate files when the environment is served over TLS; absent when served on port 80. */
  certificate?: { fullchain: string; privkey: string };
}

export interface SiteContext {
  paths: ProxyPaths;
  /** Public HTTP port on the host, sent upstream as X-Forwarded-Port by the servers on port 80. */
  httpPort: number;
  /** Public HTTPS port on the host, for redirects and X-Forwarded-Port. */
  httpsPort: number;
  /** The platform's rate-limit classes: every routed location applies each (see nginx-conf.ts). */
  rateLimits: ProxyPlan["rateLimits"];
}

const UNAVAILABLE_URI = "/__berth/unavailable.html";
const MAINTENANCE_URI = "/__berth/maintenance.html";
const NO_ROUTE_LOCATION = "@berth_no_route";

export function renderSite(app: string, environments: ServedEnvironment[], context: SiteContext): string {
  return renderConfig([
    `# App ${app}: the servers of every environment. Rendered by berth; do not edit.`,
    ...environments.flatMap((served) => ["", ...environmentSection(served, context)]),
  ]);
}

function environmentSection(served: ServedEnvironment, context: SiteContext): ConfigLine[] {
  const { environment, certificate } = served;
  const servers = certificate
    ? [redirectingHttpServer(environment, context), "", tlsServer(environment, certificate, context)]
    : [plainHttpServer(environment, context)];
  return [`# ${environment.app}/${environment.env}`, ...servers];
}

/** Port 80 of an environment served over TLS: ACME challenges, and a redirect for the rest. */
function redirectingHttpServer(environment: EnvironmentPlan, context: SiteContext): ConfigBlock {
  const port = context.httpsPort === 443 ? "" : `:${context.httpsPort}`;
  return block("server", [
    "listen 80;",
    ...identity(environment),
    "",
    acmeChallengeLocation(context.paths),
    "",
    // 308 keeps the method and body: a POST sent to http:// is not silently turned into a GET.
    block("location /", [`return 308 https://$host${port}$request_uri;`]),
  ]);
}

/** Port 80 of an environment without TLS (off, or no certificate yet): ACME challenges and the app. */
function plainHttpServer(environment: EnvironmentPlan, context: SiteContext): ConfigBlock {
  return block("server", [
    "listen 80;",
    ...identity(environment),
    forwardedPort(context.httpPort),
    ...appServerBody(environment, false, context, [acmeChallengeLocation(context.paths)]),
  ]);
}

function tlsServer(environment: EnvironmentPlan, certificate: { fullchain: string; privkey: string }, context: SiteContext): ConfigBlock {
  return block("server", [
    "listen 443 ssl http2;",
    ...identity(environment),
    `ssl_certificate ${word(certificate.fullchain)};`,
    `ssl_certificate_key ${word(certificate.privkey)};`,
    forwardedPort(context.httpsPort),
    ...appServerBody(environment, true, context, []),
  ]);
}

/** Names the server answers to, the id of a request that came without one, and the app and environment its requests are logged under. */
function identity(environment: EnvironmentPlan): string[] {
  return [
    `server_name ${environment.domains.join(" ")};`,
    requestIdLine(),
    `set $berth_app ${environment.app};`,
    `set $berth_env ${environment.env};`,
  ];
}

/**
 * The port clients used, as published on the host (Docker maps it to 80/443 in the container),
 * for X-Forwarded-Port and the router's redirects: a constant of each server that serves the app
 * (routed or in maintenance), cheaper per request than a map of $scheme.
 */
function forwardedPort(port: number): string {
  return `set $berth_forwarded_port ${port};`;
}

/** How an environment's server answers, apart from ACME challenges. */
interface Answers {
  errorPages: string[];
  locations: ConfigBlock[];
}

/**
 * The app itself, in maintenance or routed. The response headers are set at server level only:
 * no location adds a header of its own, so every location (routes, ACME, error pages) sends them.
 */
function appServerBody(environment: EnvironmentPlan, isServedOverTls: boolean, context: SiteContext, acmeLocations: ConfigBlock[]): ConfigLine[] {
  const answers = environment.isInMaintenance ? maintenanceAnswers(environment, context.paths) : routedAnswers(environment, context);
  return [
    ...securityHeaders(environment, isServedOverTls),
    ...answers.errorPages,
    ...[...acmeLocations, ...answers.locations].flatMap((location) => ["", location]),
  ];
}

/** Every request gets the environment's maintenance page with 503. */
function maintenanceAnswers(environment: EnvironmentPlan, paths: ProxyPaths): Answers {
  return {
    errorPages: [`error_page 503 ${MAINTENANCE_URI};`],
    locations: [
      block("location /", ["return 503;"]),
      pageLocation(MAINTENANCE_URI, `${paths.pages}/${pageFiles.maintenance(environment)}`),
    ],
  };
}

/**
 * The routes; 502 and 504 (no healthy replica, or none answered in time) become the unavailable
 * page, and a path no route takes goes to the router once more (off the hot path), which answers
 * as nginx would have: a 301 from `/docs` to `/docs/` when `/docs/` is a prefix route, else 404.
 */
function routedAnswers(environment: EnvironmentPlan, context: SiteContext): Answers {
  return {
    errorPages: [`error_page 502 504 ${UNAVAILABLE_URI};`, `error_page 404 = ${NO_ROUTE_LOCATION};`],
    locations: [
      routedLocation(environment, context.rateLimits),
      block(`location ${NO_ROUTE_LOCATION}`, [`content_by_lua_block { berth_router.no_route(${routerArguments(environment)}) }`]),
      pageLocation(UNAVAILABLE_URI, `${context.paths.pages}/${pageFiles.unavailable}`),
    ],
  };
}

/** The app and environment as Lua string literals (names: nothing to escape). */
function routerArguments(environment: EnvironmentPlan): string {
  return `"${environment.app}", "${environment.env}"`;
}

/**
 * `^~` makes this prefix win over every regex route: a tenant's regex must not swallow the
 * challenge path, or certificates stop renewing.
 */
function acmeChallengeLocation(paths: ProxyPaths): ConfigBlock {
  return block("location ^~ /.well-known/acme-challenge/", [`root ${word(paths.acmeWebroot)};`, "default_type text/plain;"]);
}

/**
 * Every path the server has no location of its own for: the router names the route's upstream
 * (its balancer then picks the address) and rate-limit class, whose zone alone counts the
 * request; no route is a 404, no healthy container a 502. The app and environment are written
 * into the call, which spares the router two variable lookups per request. Request and response
 * headers are inherited (http and server level): a header line here would drop all the
 * inherited ones.
 */
function routedLocation(environment: EnvironmentPlan, rateLimits: ProxyPlan["rateLimits"]): ConfigBlock {
  return block("location /", [
    'set $berth_route_limit "";',
    `set_by_lua_block $berth_upstream { return berth_router.route(${routerArguments(environment)}) }`,
    block('if ($berth_upstream = "")', ["return 404;"]),
    block('if ($berth_upstream = "-")', ["return 502;"]),
    ...Object.entries(rateLimits).map(([name, { burst }]) => `limit_req zone=${name} burst=${burst} nodelay;`),
    `proxy_pass http://${BACKENDS_UPSTREAM};`,
  ]);
}

/** A page nginx serves itself, reachable only through error_page. */
function pageLocation(uri: string, file: string): ConfigBlock {
  return block(`location = ${uri}`, ["internal;", `alias ${word(file)};`]);
}
