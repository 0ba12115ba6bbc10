// The proxy's whole configuration from the plan and what is running: pure and synchronous,
// same input, same bytes, so apply can compare a render with the live generation and skip
// the reload when nothing changed.
import { createHash } from "node:crypto";
import type { EnvironmentPlan, PlatformPlan } from "../plan/types.js";
import { certificateFiles, certificateKey, configFiles, DEFAULT_PROXY_PATHS, pageFiles, type ProxyPaths } from "./layout.js";
import { renderGenerationConf, renderNginxConf } from "./nginx-conf.js";
import { maintenancePage, unavailablePage } from "./pages.js";
import { renderRouteTable } from "./route-table.js";
import { ROUTER_LUA } from "./router-lua.js";
import { renderSite, type ServedEnvironment, type SiteContext } from "./sites.js";

export { DEFAULT_PROXY_PATHS, certificateDirName, certificateFiles, certificateKey, configFiles, pageFiles } from "./layout.js";
export { GENERATION_HOST } from "./nginx-conf.js";
export type { ProxyPaths } from "./layout.js";

export interface ProxyObserved {
  /** "ip:port" of the running, healthy containers of each component, by upstream name (names.upstream). */
  upstreams: Record<string, string[]>;
  /** Whether a certificate exists for an environment, by `certificateKey` ("app/env"). */
  certificates: Record<string, boolean>;
}

export interface RenderedProxy {
  /** One generation: paths relative to its directory (nginx.conf, generation.conf, sites/…, router.lua, routes.tsv). */
  config: Record<string, string>;
  /** Pages, relative to ProxyPaths.pages; shared by every generation. */
  pages: Record<string, string>;
  /** A hash of the configuration and its route table; nginx answers it on GENERATION_HOST once every worker runs both. */
  token: string;
}

export function renderProxyConfig(plan: PlatformPlan, observed: ProxyObserved, paths: ProxyPaths = DEFAULT_PROXY_PATHS): RenderedProxy {
  const served = plan.environments.map((environment) => serveEnvironment(environment, observed, paths));
  const config: Record<string, string> = {
    [configFiles.nginxConf]: renderNginxConf(plan, paths),
    [configFiles.generation]: renderGenerationConf(),
    [configFiles.router]: ROUTER_LUA,
  };
  const context = { paths, httpPort: plan.proxy.httpPort, httpsPort: plan.proxy.httpsPort, rateLimits: plan.proxy.rateLimits };
  for (const [app, environments] of groupByApp(served)) config[configFiles.site(app)] = siteOf(app, environments, context);
  const routeTable = renderRouteTable(plan.environments, observed.upstreams, configHash(config));
  config[configFiles.routeTable] = routeTable.text;
  const token = routeTable.token;

  const pages: Record<string, string> = { [pageFiles.unavailable]: unavailablePage() };
  for (const environment of plan.environments) pages[pageFiles.maintenance(environment)] = maintenancePage(environment);
  return { config, pages, token };
}

/**
 * An app's site file, rendered again only when what it is rendered from changed: a proxy change
 * (a domain, a certificate, maintenance) usually concerns one app of many, and with
 * a thousand apps rendering them all took a fifth of a second. Same inputs, same bytes, so
 * renderProxyConfig stays a function of its arguments.
 */
const renderedSites = new Map<string, { inputs: string; text: string }>();
const RENDERED_SITES_MAX = 20_000;

function siteOf(app: string, environments: ServedEnvironment[], context: SiteContext): string {
  const inputs = JSON.stringify([environments, context.paths, context.httpPort, context.httpsPort, context.rateLimits]);
  const known = renderedSites.get(app);
  if (known?.inputs === inputs) return known.text;
  const text = renderSite(app, environments, context);
  if (renderedSites.size >= RENDERED_SITES_MAX) renderedSites.clear();
  renderedSites.set(app, { inputs, text });
  return text;
}

/** Same files, same hash; any changed byte, another one. */
function configHash(config: Record<string, string>): string {
  const hash = createHash("sha256");
  for (const path of Object.keys(config).sort()) hash.update(`${path}\0${config[path]}\0`);
  return hash.digest("hex").slice(0, 16);
}

/** TLS serves an environment once its certificate exists; before that, port 80 does. */
function serveEnvironment(environment: EnvironmentPlan, observed: ProxyObserved, paths: ProxyPaths): ServedEnvironment {
  const hasCertificate = environment.tls.mode !== "off" && observed.certificates[certificateKey(environment)] === true;
  return hasCertificate ? { environment, certificate: certificateFiles(paths, environment) } : { environment };
}

function groupByApp(served: ServedEnvironment[]): Map<string, ServedEnvironment[]> {
  const apps = new Map<string, ServedEnvironment[]>();
  for (const entry of served) {
    const environments = apps.get(entry.environment.app) ?? [];
    environments.push(entry);
    apps.set(entry.environment.app, environments);
  }
  return apps;
}
