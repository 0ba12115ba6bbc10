// Where the proxy's files are. A generation's own files (nginx.conf, generation.conf, sites/, the
// router and its route table) are named relative to it, so `nginx -t` can check a staged
// generation before `current` points at it. Everything shared between generations has an
// absolute path in the proxy container; so does the router's code and table, which Lua reads.
import type { EnvironmentPlan } from "../plan/types.js";

export interface ProxyPaths {
  /** Holds `<app>-<env>/fullchain.pem` and `privkey.pem` per environment. */
  certs: string;
  /** Holds the rendered pages (RenderedProxy.pages). */
  pages: string;
  /** ACME HTTP-01 webroot: challenge files live under `.well-known/acme-challenge/` in it. */
  acmeWebroot: string;
  accessLog: string;
  errorLog: string;
  pid: string;
  /** The generation nginx runs (the `current` link): the router reads the live route table through it. */
  live: string;
  /** Holds the generations by number, so the router can check a staged route table. */
  generations: string;
}

export const DEFAULT_PROXY_PATHS: ProxyPaths = {
  certs: "/etc/berth/certs",
  pages: "/etc/berth/pages",
  acmeWebroot: "/var/www/acme",
  accessLog: "/var/log/berth/access.log",
  errorLog: "/var/log/berth/error.log",
  pid: "/run/nginx.pid",
  live: "/etc/berth/current",
  generations: "/etc/berth/gen",
};

type EnvironmentName = Pick<EnvironmentPlan, "app" | "env">;

/** Files of one generation, relative to its directory. */
export const configFiles = {
  nginxConf: "nginx.conf",
  /** A tiny server that answers the generation's token, so berth sees when new workers serve it. */
  generation: "generation.conf",
  /** One file per app: the servers of all its environments. */
  site: (app: string) => `sites/${app}.conf`,
  /** The router's Lua code (router-lua.ts). */
  router: "router.lua",
  /** Every environment's routes as data (route-table.ts); the workers re-read it without a reload. */
  routeTable: "routes.tsv",
};

/** Pages, relative to ProxyPaths.pages. */
export const pageFiles = {
  unavailable: "unavailable.html",
  maintenance: ({ app, env }: EnvironmentName) => `${app}-${env}/maintenance.html`,
};

/** Key of an environment in ProxyObserved.certificates. */
export function certificateKey({ app, env }: EnvironmentName): string {
  return `${app}/${env}`;
}

/**
 * Directory name of an environment's certificate under ProxyPaths.certs. Unique per
 * environment: the spec rejects two environments whose `<app>_<env>` database names collide,
 * and `<app>-<env>` collides exactly when those do.
 */
export function certificateDirName({ app, env }: EnvironmentName): string {
  return `${app}-${env}`;
}

export function certificateFiles(paths: ProxyPaths, environment: EnvironmentName): { fullchain: string; privkey: string } {
  const dir = `${paths.certs}/${certificateDirName(environment)}`;
  return { fullchain: `${dir}/fullchain.pem`, privkey: `${dir}/privkey.pem` };
}
