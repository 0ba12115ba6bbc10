// Checks that span fields or files: names that collide, references to things that do not
// exist, limits beyond the host. Pure: the host's size is passed in.
import { didYouMean, issueAt, type ParsedFile, type PathSegment, type SpecIssue } from "./issues.js";
import type { AppSpec, PlatformSpec, ResourcesSpec } from "./schema.js";
import { names } from "../plan/names.js";
import { formatMemory } from "./units.js";

export interface HostLimits {
  cpus: number;
  memoryBytes: number;
}

/** App names berth keeps for itself (its own containers, networks and roles use them). */
export const RESERVED_APP_NAMES = ["berth", "platform", "proxy", "postgres", "nginx", "default", "admin", "system", "all"];

const POSTGRES_IDENTIFIER_MAX = 63;


interface ParsedApp {
  file: ParsedFile;
  spec: AppSpec;
}

export function checkSpec(
  platform: { file: ParsedFile; spec: PlatformSpec | undefined },
  apps: readonly ParsedApp[],
  host: HostLimits,
): SpecIssue[] {
  const issues: SpecIssue[] = [];
  if (platform.spec) issues.push(...checkPlatform(platform.file, platform.spec, host));

  const appNames = new Map<string, ParsedApp>();
  const domains = new Map<string, string>();
  const environmentNames = new Map<string, string>();
  const containers = new Map<string, { app: string; owner: string }>();
  for (const app of apps) {
    const { file, spec } = app;
    const where = (path: readonly PathSegment[], message: string, atKey = false) => issues.push(issueAt(file, path, message, atKey));

    const sameName = appNames.get(spec.name);
    if (sameName) where(["name"], `app "${spec.name}" is already defined in ${sameName.file.file}; an app name may be used once`);
    else appNames.set(spec.name, app);
    if (RESERVED_APP_NAMES.includes(spec.name)) {
      where(["name"], `"${spec.name}" is reserved for berth itself; choose another app name`);
    } else if (spec.name.startsWith("berth-")) {
      // Platform containers are berth-{platform}-proxy and so on: an app "berth-a" could take one.
      where(["name"], `"${spec.name}" starts with "berth-", which is reserved for berth's own containers; choose another app name`);
    }

    checkComponents(app, host, where);
    checkRoutes(app, platform.spec, where);

    for (const [envName, env] of Object.entries(spec.environments)) {
      const owner = `${spec.name}/${envName} (${file.file})`;
      env.domains.forEach((domain, index) => {
        const domainOwner = domains.get(domain);
        if (domainOwner) where(["environments", envName, "domains", index], `domain "${domain}" is already used by ${domainOwner}`);
        else domains.set(domain, owner);
      });

      for (const componentName of Object.keys(env.components)) {
        if (!(componentName in spec.components)) {
          where(
            ["environments", envName, "components", componentName],
            `no component "${componentName}" in this app${didYouMean(componentName, Object.keys(spec.components))}`,
            true,
          );
        }
      }
      for (const [componentName, override] of Object.entries(env.components)) {
        checkResources(override.resources, host, ["environments", envName, "components", componentName, "resources"], where);
      }

      if (platform.spec?.tls.mode === "manual" && !env.tls) {
        where(["environments", envName], `tls.mode is manual in the platform file, so this environment needs tls: { cert, key }`, true);
      }
      if (platform.spec && platform.spec.tls.mode !== "manual" && env.tls) {
        where(["environments", envName, "tls"], `certificate files are only read when the platform's tls.mode is manual (it is ${platform.spec.tls.mode})`, true);
      }

      // A second file with the same app name is reported once, above, not again for every name it repeats.
      if (sameName) continue;

      // Networks are berth-{app}-{env} and databases {app}_{env}: "a-b"/"c" and "a"/"b-c" share both.
      const network = names.network(spec.name, envName);
      const database = names.database(spec.name, envName);
      if (platform.spec && network === names.controlNetwork(platform.spec.name)) {
        where(["environments", envName], `network "${network}" of ${spec.name}/${envName} is the platform's own control network; rename the environment`, true);
      }
      const networkOwner = environmentNames.get(network);
      if (networkOwner) {
        where(
          ["environments", envName],
          `network "${network}" and database "${database}" of ${spec.name}/${envName} are also those of ${networkOwner}; rename the app or the environment`,
          true,
        );
      } else environmentNames.set(network, owner);
      if (database.length > POSTGRES_IDENTIFIER_MAX) {
        where(["environments", envName], `database name "${database}" is longer than PostgreSQL's ${POSTGRES_IDENTIFIER_MAX} characters; shorten the app or environment name`, true);
      }

      for (const [componentName, component] of Object.entries(spec.components)) {
        const replicas = env.components[componentName]?.replicas ?? component.replicas;
        const containerNames = names.containers(spec.name, componentName, envName, replicas);
        const clash = containerNames.find((container) => containers.has(container));
        if (clash !== undefined) {
          const other = containers.get(clash)!;
          // Within one app only an environment name can make two containers meet ("prod" with replicas, "prod-1").
          const isSameApp = other.app === spec.name;
          where(
            isSameApp ? ["environments", envName] : ["components", componentName],
            `container name "${clash}" of ${spec.name}/${envName} is also a container of ${other.owner}; rename the ${isSameApp ? "environment" : "component"}`,
            true,
          );
        }
        for (const container of containerNames) {
          if (!containers.has(container)) containers.set(container, { app: spec.name, owner: `${spec.name}/${envName} (component ${componentName}, ${file.file})` });
        }
      }
    }
  }
  return issues;
}


function checkPlatform(file: ParsedFile, spec: PlatformSpec, host: HostLimits): SpecIssue[] {
  const issues: SpecIssue[] = [];
  if (spec.postgres.image && spec.postgres.url) {
    issues.push(issueAt(file, ["postgres", "url"], "set either postgres.image (a container berth runs) or postgres.url (an external server), not both", true));
  }
  if (spec.proxy.httpPort === spec.proxy.httpsPort) {
    issues.push(issueAt(file, ["proxy", "httpsPort"], `expected a port other than httpPort, got ${spec.proxy.httpsPort}`));
  }
  if (spec.postgres.reservedConnections >= spec.postgres.maxConnections) {
    issues.push(issueAt(file, ["postgres", "reservedConnections"], `expected fewer than maxConnections (${spec.postgres.maxConnections}), got ${spec.postgres.reservedConnections}`));
  }
  const channelNames = new Set<string>();
  spec.alerts.channels.forEach((channel, index) => {
    if (channelNames.has(channel.name)) issues.push(issueAt(file, ["alerts", "channels", index, "name"], `alert channel "${channel.name}" is defined twice`));
    channelNames.add(channel.name);
  });
  checkResources(spec.defaults.resources, host, ["defaults", "resources"], (path, message) => issues.push(issueAt(file, path, message)));
  return issues;
}

type Report = (path: readonly PathSegment[], message: string, atKey?: boolean) => void;

function checkComponents({ spec }: ParsedApp, host: HostLimits, where: Report): void {
  for (const [name, component] of Object.entries(spec.components)) {
    const path = ["components", name];
    if (component.build && component.image) where([...path, "image"], "set either build or image, not both", true);
    else if (!component.build && !component.image) where(path, "expected build (a directory of the source) or image, got neither", true);
    if (component.build && !spec.source) {
      where([...path, "build"], "build needs the app's source: add source: { path } or source: { git, ref } to the app, or use image instead", true);
    }
    if (component.database && "DATABASE_URL" in component.env) {
      where([...path, "env", "DATABASE_URL"], "DATABASE_URL is set by berth for components with database: true; remove it", true);
    }
    checkResources(component.resources, host, [...path, "resources"], where);
  }
}

function checkResources(resources: Partial<ResourcesSpec> | undefined, host: HostLimits, path: readonly PathSegment[], where: Report): void {
  if (!resources) return;
  if (resources.cpus !== undefined && resources.cpus > host.cpus) {
    where([...path, "cpus"], `expected at most ${host.cpus} (the CPUs of this host), got ${resources.cpus}`);
  }
  if (resources.memory !== undefined && resources.memory > host.memoryBytes) {
    where([...path, "memory"], `expected at most ${formatMemory(host.memoryBytes)} (the memory of this host), got ${formatMemory(resources.memory)}`);
  }
}

function checkRoutes({ file, spec }: ParsedApp, platform: PlatformSpec | undefined, where: Report): void {
  const components = Object.keys(spec.components);
  const seen = new Map<string, number>();
  spec.routes.forEach((route, index) => {
    const path = ["routes", index];
    if (!(route.to in spec.components)) {
      where([...path, "to"], `no component "${route.to}" in this app${didYouMean(route.to, components)}`);
    }
    if (platform && !(route.limit in platform.proxy.rateLimits)) {
      const classes = Object.keys(platform.proxy.rateLimits);
      const known = `the platform's proxy.rateLimits (${classes.join(", ")})`;
      if (file.doc.hasIn([...path, "limit"])) {
        where([...path, "limit"], `no rate-limit class "${route.limit}" in ${known}${didYouMean(route.limit, classes)}`);
      } else {
        where(path, `the default rate-limit class "${route.limit}" is not in ${known}; set limit`);
      }
    }
    if (route.path.startsWith("^")) {
      try {
        new RegExp(route.path);
      } catch (error) {
        const reason = (error as Error).message.replace(/^Invalid regular expression: \/.*\/[a-z]*: /, "");
        where([...path, "path"], `expected a valid regular expression, got ${JSON.stringify(route.path)} (${reason})`);
      }
    }
    const previous = seen.get(route.path);
    if (previous !== undefined) where([...path, "path"], `path "${route.path}" is already routed by routes[${previous}]`);
    else seen.set(route.path, index);
  });
}
