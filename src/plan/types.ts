// The desired state of a platform: what should run, named and labelled, with every default
// resolved. Produced by the pure planner from the spec; consumed by apply code and renderers.

export type Labels = Record<string, string>;

export interface ResourceLimits {
  cpus: number;
  memoryBytes: number;
  pids: number;
}

export interface HealthCheck {
  path: string;
  /** Docker HEALTHCHECK test, argv form. */
  test: string[];
  intervalMs: number;
  timeoutMs: number;
  retries: number;
  startPeriodMs: number;
}

/** Where a container's image comes from: a local build of the app's source, or a named image. */
export type ImageSource =
  | {
      kind: "build";
      app: string;
      component: string;
      source: { kind: "dir"; dir: string } | { kind: "git"; url: string; ref: string };
      /** Build context inside the source, and the Dockerfile inside the context. */
      context: string;
      dockerfile: string;
    }
  | { kind: "image"; ref: string };

export interface ContainerPlan {
  name: string;
  app: string;
  env: string;
  component: string;
  replica: number;
  image: ImageSource;
  port: number;
  network: string;
  /** DNS names other containers on the network (the proxy) use to reach it. */
  aliases: string[];
  envVars: Record<string, string>;
  /** Whether DATABASE_URL of the environment's database is injected at start. */
  hasDatabase: boolean;
  resources: ResourceLimits;
  health: HealthCheck;
  capAdd: string[];
  user?: string;
  labels: Labels;
}

export interface ComponentPlan {
  name: string;
  image: ImageSource;
  port: number;
  replicas: number;
  release?: string[];
  hasDatabase: boolean;
  /** Secrets as files in /run/secrets (spec: secrets.as: files) instead of environment variables. */
  hasSecretFiles?: true;
  containers: ContainerPlan[];
}

export interface RoutePlan {
  kind: "prefix" | "regex";
  path: string;
  component: string;
  port: number;
  /** Upstream name in nginx: unique per app environment and component. */
  upstream: string;
  containers: string[];
  limit: { name: string; rate: number; burst: number };
}

export interface DatabasePlan {
  name: string;
  role: string;
  connectionLimit: number;
  statementTimeoutMs: number;
  idleInTransactionTimeoutMs: number;
}

export interface SecurityHeaders {
  csp: string;
  frameOptions: "DENY" | "SAMEORIGIN";
  referrerPolicy: string;
  hsts: false | { maxAgeSeconds: number; includeSubdomains: boolean; preload: boolean };
}

export type TlsPlan =
  | { mode: "off" }
  | { mode: "self-signed" }
  | { mode: "acme"; email: string; directory: string }
  | { mode: "manual"; certFile: string; keyFile: string };

export interface EnvironmentPlan {
  app: string;
  env: string;
  network: { name: string; labels: Labels };
  domains: string[];
  isInMaintenance: boolean;
  database?: DatabasePlan;
  components: ComponentPlan[];
  routes: RoutePlan[];
  headers: SecurityHeaders;
  tls: TlsPlan;
  /** The secrets version of the deployed release (withReleases); absent: the secrets as they are now. */
  secretsVersion?: number;
}

export interface ProxyPlan {
  container: string;
  image: string;
  bind: string;
  httpPort: number;
  httpsPort: number;
  volumes: { config: string; certs: string; acme: string; logs: string };
  rateLimits: Record<string, { rate: number; burst: number }>;
  /** Every environment network: the proxy reaches each app, the apps never each other. */
  networks: string[];
  labels: Labels;
}

export type PostgresPlan =
  | {
      kind: "container";
      container: string;
      image: string;
      volume: string;
      maxConnections: number;
      reservedConnections: number;
      /** Only the networks of environments that have a database. */
      networks: string[];
      labels: Labels;
    }
  | { kind: "external"; url: string; maxConnections: number; reservedConnections: number };

/** berthd as a platform container (spec `control:`). */
export interface ControlPlan {
  container: string;
  image: string;
  /** HOST:PORT of its API on the host. */
  listen: string;
  /** The spec directory, mounted read-only at the same path. */
  specRoot: string;
  /** Local source directories of the apps (outside the spec directory too), mounted read-only. */
  sourceDirs: string[];
  labels: Labels;
}

export interface PlatformPlan {
  platform: string;
  proxy: ProxyPlan;
  postgres: PostgresPlan;
  control?: ControlPlan;
  environments: EnvironmentPlan[];
}
