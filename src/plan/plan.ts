// The planner: spec → desired state. Pure and synchronous: same spec, same plan.
import { dirname, resolve } from "node:path";
import type { Spec } from "../spec/validate.js";
import type { AppSpec, ComponentSpec, EnvironmentSpec, PlatformSpec } from "../spec/schema.js";
import { LABEL, environmentLabels, names, platformLabels } from "./names.js";
import type {
  ComponentPlan,
  ContainerPlan,
  EnvironmentPlan,
  HealthCheck,
  ImageSource,
  PlatformPlan,
  PostgresPlan,
  ResourceLimits,
  RoutePlan,
  TlsPlan,
} from "./types.js";

export const DEFAULT_POSTGRES_IMAGE = "postgres:15-bookworm";

export interface PlanOptions {
  /** Absolute directory of the spec (holding platform.yaml); local sources resolve from it. */
  root: string;
}

export function planPlatform(spec: Spec, options: PlanOptions): PlatformPlan {
  const { platform } = spec;
  const environments = spec.apps.flatMap(({ file, spec: app }) =>
    Object.entries(app.environments).map(([envName, env]) => planEnvironment(platform, app, file, envName, env, options)),
  );
  return {
    platform: platform.name,
    proxy: {
      container: names.proxyContainer(platform.name),
      image: platform.proxy.image,
      bind: platform.proxy.bind,
      httpPort: platform.proxy.httpPort,
      httpsPort: platform.proxy.httpsPort,
      volumes: {
        config: names.proxyVolume(platform.name, "config"),
        certs: names.proxyVolume(platform.name, "certs"),
        acme: names.proxyVolume(platform.name, "acme"),
        logs: names.proxyVolume(platform.name, "logs"),
      },
      rateLimits: platform.proxy.rateLimits,
      networks: environments.map((env) => env.network.name),
      labels: platformLabels(platform.name, "proxy"),
    },
    postgres: planPostgres(platform, environments),
    ...(platform.control
      ? {
          control: {
            container: names.controlContainer(platform.name),
            image: platform.control.image,
            listen: platform.control.listen,
            specRoot: options.root,
            sourceDirs: [
              ...new Set(
                environments.flatMap((env) =>
                  env.components.flatMap((c) => (c.image.kind === "build" && c.image.source.kind === "dir" ? [c.image.source.dir] : [])),
                ),
              ),
            ].sort(),
            labels: platformLabels(platform.name, "control"),
          },
        }
      : {}),
    environments,
  };
}

function planPostgres(platform: PlatformSpec, environments: EnvironmentPlan[]): PostgresPlan {
  const { maxConnections, reservedConnections } = platform.postgres;
  if (platform.postgres.url) return { kind: "external", url: platform.postgres.url, maxConnections, reservedConnections };
  return {
    kind: "container",
    container: names.postgresContainer(platform.name),
    image: platform.postgres.image ?? DEFAULT_POSTGRES_IMAGE,
    volume: names.postgresVolume(platform.name),
    maxConnections,
    reservedConnections,
    networks: environments.filter((env) => env.database).map((env) => env.network.name),
    labels: platformLabels(platform.name, "postgres"),
  };
}

function planEnvironment(
  platform: PlatformSpec,
  app: AppSpec,
  file: string,
  envName: string,
  env: EnvironmentSpec,
  options: PlanOptions,
): EnvironmentPlan {
  const network = names.network(app.name, envName);
  const components = Object.entries(app.components).map(([name, component]) =>
    planComponent(platform, app, file, envName, env, name, component, network, options),
  );
  const hasDatabase = components.some((component) => component.hasDatabase);
  const routes: RoutePlan[] = app.routes.map((route) => {
    const component = components.find((c) => c.name === route.to)!;
    return {
      kind: route.path.startsWith("^") ? "regex" : "prefix",
      path: route.path,
      component: route.to,
      port: component.port,
      upstream: names.upstream(app.name, envName, route.to),
      containers: component.containers.map((container) => container.name),
      limit: { name: route.limit, ...platform.proxy.rateLimits[route.limit]! },
    };
  });
  const { hsts } = app.headers;
  return {
    app: app.name,
    env: envName,
    network: { name: network, labels: environmentLabels(platform.name, "network", app.name, envName) },
    domains: env.domains,
    isInMaintenance: env.maintenance ?? app.maintenance,
    ...(hasDatabase
      ? {
          database: {
            name: names.database(app.name, envName),
            role: names.role(app.name, envName),
            connectionLimit: app.database.connectionLimit,
            statementTimeoutMs: app.database.statementTimeout,
            idleInTransactionTimeoutMs: app.database.idleInTransactionTimeout,
          },
        }
      : {}),
    components,
    routes,
    headers: {
      csp: app.headers.csp,
      frameOptions: app.headers.frameOptions,
      referrerPolicy: app.headers.referrerPolicy,
      hsts:
        hsts === false
          ? false
          : hsts === true
            ? { maxAgeSeconds: 31_536_000, includeSubdomains: false, preload: false }
            : { maxAgeSeconds: Math.round(hsts.maxAge / 1000), includeSubdomains: hsts.includeSubdomains, preload: hsts.preload },
    },
    tls: planTls(platform, env),
  };
}

function planTls(platform: PlatformSpec, env: EnvironmentSpec): TlsPlan {
  switch (platform.tls.mode) {
    case "acme":
      return { mode: "acme", email: platform.tls.email, directory: platform.tls.directory };
    case "manual":
      return { mode: "manual", certFile: env.tls!.cert, keyFile: env.tls!.key };
    default:
      return { mode: platform.tls.mode };
  }
}

function planComponent(
  platform: PlatformSpec,
  app: AppSpec,
  file: string,
  envName: string,
  env: EnvironmentSpec,
  name: string,
  component: ComponentSpec,
  network: string,
  options: PlanOptions,
): ComponentPlan {
  const override = env.components[name];
  const replicas = override?.replicas ?? component.replicas;
  const resources: ResourceLimits = {
    cpus: override?.resources?.cpus ?? component.resources?.cpus ?? platform.defaults.resources.cpus,
    memoryBytes: override?.resources?.memory ?? component.resources?.memory ?? platform.defaults.resources.memory,
    pids: override?.resources?.pids ?? component.resources?.pids ?? platform.defaults.resources.pids,
  };
  const image = imageSource(app, file, name, component, options);
  const health = healthCheck(platform, component);
  const envVars = { ...component.env, ...env.env, ...override?.env };
  const alias = names.container(app.name, name, envName, 1, 1);
  const containers: ContainerPlan[] = Array.from({ length: replicas }, (_, index) => {
    const containerName = names.container(app.name, name, envName, index + 1, replicas);
    return {
      name: containerName,
      app: app.name,
      env: envName,
      component: name,
      replica: index + 1,
      image,
      port: component.port,
      network,
      aliases: [alias],
      envVars,
      hasDatabase: component.database,
      resources,
      health,
      capAdd: component.capabilities,
      ...(component.user ? { user: component.user } : {}),
      labels: {
        ...environmentLabels(platform.name, "tenant", app.name, envName),
        [LABEL.component]: name,
        [LABEL.replica]: String(index + 1),
      },
    };
  });
  return {
    name,
    image,
    port: component.port,
    replicas,
    ...(component.release ? { release: component.release } : {}),
    hasDatabase: component.database,
    ...((component.secrets?.as ?? app.secrets.as) === "files" ? { hasSecretFiles: true as const } : {}),
    containers,
  };
}

function imageSource(app: AppSpec, file: string, component: string, spec: ComponentSpec, options: PlanOptions): ImageSource {
  if (spec.image) return { kind: "image", ref: spec.image };
  const build = spec.build!;
  const source = app.source!;
  return {
    kind: "build",
    app: app.name,
    component,
    source:
      "git" in source
        ? { kind: "git", url: source.git, ref: source.ref }
        : { kind: "dir", dir: resolve(options.root, dirname(file), source.path) },
    context: build.context,
    dockerfile: build.dockerfile,
  };
}

/**
 * The health check runs inside the tenant's container, whose tools we do not know: try curl,
 * then wget, then bash's /dev/tcp, and Node's fetch last (a Node start costs seconds of a
 * half-CPU limit, so it must not be the common path). The path cannot hold a single quote
 * (the schema refuses it), so single-quoting makes it literal to the shell.
 */
export function healthTest(port: number, path: string): string[] {
  const url = `http://127.0.0.1:${port}${path}`;
  const request = `GET ${path.replaceAll("%", "%%")} HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n`;
  const bash = `bash -c 'exec 3<>/dev/tcp/127.0.0.1/${port} && printf "${request}" >&3 && head -n1 <&3 | grep -q " [23][0-9][0-9] "'`;
  const node = `node -e "fetch('${url}').then(r=>process.exit(r.status<400?0:1),()=>process.exit(1))"`;
  return ["CMD-SHELL", `curl -fsS -o /dev/null '${url}' || wget -q -O /dev/null '${url}' || ${bash} || ${node}`];
}

function healthCheck(platform: PlatformSpec, component: ComponentSpec): HealthCheck {
  const defaults = platform.defaults.health;
  const path = component.health?.path ?? "/";
  return {
    path,
    test: healthTest(component.port, path),
    intervalMs: component.health?.interval ?? defaults.interval,
    timeoutMs: component.health?.timeout ?? defaults.timeout,
    retries: component.health?.retries ?? defaults.retries,
    startPeriodMs: component.health?.startPeriod ?? defaults.startPeriod,
  };
}
