// The spec's one schema: validation, defaults, normalisation, the docs and the JSON Schema
// for editors all come from here. Every leaf states what it expects in words a user reads
// in an error ("expected a port number 1-65535"), so messages never depend on zod's wording.
// Defaults are given in the words a user writes (`prefault("256M")`), so the generated docs
// and editor hints show "256M", not 268435456.
import { z } from "zod";
import { cronProblem, parseCpus, parseDuration, parseMemory } from "./units.js";

export const NAME_PATTERN = /^[a-z][a-z0-9-]*[a-z0-9]$|^[a-z]$/;
const NAME_TEXT = "a lowercase name of letters, digits and '-' (starting with a letter, not ending with '-')";
const ENV_KEY_PATTERN = /^[A-Za-z_][A-Za-z0-9_]*$/;
const HOSTNAME_PATTERN = /^(?=.{1,253}$)(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;
const HTTP_URL = /^https?:\/\/\S+$/;
const EMAIL = /^[^@\s]+@[^@\s]+$/;

const name = (max: number) =>
  z
    .string({ error: NAME_TEXT })
    .regex(NAME_PATTERN, NAME_TEXT)
    .max(max, `a name of at most ${max} characters`)
    .meta({ title: "name" });

const memory = z
  .union([z.string(), z.number()], { error: "a memory size like 256M or 1G" })
  .transform((value, ctx) => {
    const bytes = parseMemory(value);
    if (bytes === undefined) {
      ctx.issues.push({ code: "custom", message: "a memory size like 256M or 1G", input: value });
      return z.NEVER;
    }
    return bytes;
  })
  .meta({
    title: "memory size",
    description: "Memory size: a number of bytes or a number with a unit K, M, G (binary, as Docker reads them).",
  });

const duration = z
  .union([z.string(), z.number()], { error: "a duration like 500ms, 2s or 1m" })
  .transform((value, ctx) => {
    const ms = parseDuration(value);
    if (ms === undefined) {
      ctx.issues.push({ code: "custom", message: "a duration like 500ms, 2s or 1m", input: value });
      return z.NEVER;
    }
    return ms;
  })
  .meta({
    title: "duration",
    description: "Duration: a number with a unit ms, s, m or h (a bare number is seconds). Normalised to milliseconds.",
  });

const cpus = z
  .union([z.string(), z.number()], { error: "a CPU count greater than 0, like 0.5 or 2" })
  .transform((value, ctx) => {
    const count = parseCpus(value);
    if (count === undefined) {
      ctx.issues.push({ code: "custom", message: "a CPU count greater than 0, like 0.5 or 2", input: value });
      return z.NEVER;
    }
    return count;
  })
  .meta({ title: "CPU count", description: "CPU count: a number greater than 0, e.g. 0.5 for half a core." });

const port = z
  .int({ error: "a port number 1-65535" })
  .min(1, "a port number 1-65535")
  .max(65535, "a port number 1-65535");

const positiveInt = (what: string, max: number) =>
  z
    .int({ error: `${what} (a whole number 1-${max})` })
    .min(1, `${what} (a whole number 1-${max})`)
    .max(max, `${what} (a whole number 1-${max})`);

const httpUrl = (what: string) => z.string({ error: what }).regex(HTTP_URL, what);

const envValue = z
  .union([z.string(), z.number(), z.boolean()], { error: "a string, number or boolean value" })
  .transform((value) => String(value));

const envMap = z
  .record(z.string().regex(ENV_KEY_PATTERN, "an environment variable name of letters, digits and '_'"), envValue, {
    error: "a mapping of variable name to value",
  })
  .default({})
  .describe("Environment variables for the container (values are stringified).");

const hostname = z
  .string({ error: "a domain name" })
  .transform((value) => value.toLowerCase())
  .pipe(z.string().regex(HOSTNAME_PATTERN, "a domain name like example.org or app.localhost"));

const imageRef = z
  .string({ error: "an image reference like nginx:1.27" })
  .regex(/^[a-z0-9][a-z0-9._\-/:@]*$/i, "an image reference like nginx:1.27");

const safeText = (what: string) =>
  z
    .string({ error: what })
    .regex(/^[^"\n\r\\]*$/, `${what} without double quotes, backslashes or line breaks`);

export const resourcesSchema = z
  .strictObject(
    {
      cpus: cpus.optional().describe("CPU limit."),
      memory: memory.optional().describe("Memory limit (hard; the container is killed beyond it)."),
      pids: positiveInt("a process limit", 100_000).optional().describe("Maximum number of processes."),
    },
    { error: "a mapping with cpus, memory and pids" },
  )
  .describe("Resource limits. Unset fields take the platform defaults: no tenant runs unlimited.");

export const resourcesDefaultsSchema = z
  .strictObject(
    {
      cpus: cpus.prefault(0.5).describe("CPU limit."),
      memory: memory.prefault("256M").describe("Memory limit (hard; the container is killed beyond it)."),
      pids: positiveInt("a process limit", 100_000).default(256).describe("Maximum number of processes."),
    },
    { error: "a mapping with cpus, memory and pids" },
  )
  .prefault({})
  .describe("Limits applied to every tenant container that does not set its own.");

const rateLimitClass = z.strictObject(
  {
    rate: positiveInt("requests per second", 100_000).describe("Requests per second per client IP."),
    burst: z
      .int({ error: "a burst size (a whole number 0-100000)" })
      .min(0, "a burst size (a whole number 0-100000)")
      .max(100_000, "a burst size (a whole number 0-100000)")
      .describe("Requests allowed above the rate before answering 429."),
  },
  { error: "a mapping with rate and burst" },
);

const proxySchema = z
  .strictObject(
    {
      bind: z
        .string({ error: "an IPv4 address" })
        .regex(/^(\d{1,3})(\.\d{1,3}){3}$/, "an IPv4 address like 127.0.0.1 or 0.0.0.0")
        .default("0.0.0.0")
        .describe("Host address the proxy's ports are published on."),
      httpPort: port.default(80).describe("Host port for HTTP."),
      httpsPort: port.default(443).describe("Host port for HTTPS; must differ from httpPort."),
      image: imageRef
        .default("berth-nginx:1.22")
        .describe("nginx image of the proxy container. It needs nginx's Lua module from Debian (libnginx-mod-http-lua) for the route table: `bash scripts/images.sh nginx` builds berth-nginx:1.22 on this host."),
      rateLimits: z
        .record(name(32), rateLimitClass, { error: "a mapping of class name to { rate, burst }" })
        .default({ general: { rate: 100, burst: 50 }, api: { rate: 20, burst: 20 } })
        .describe("Rate-limit classes (per client IP) that routes refer to by name. Setting it replaces the default classes."),
    },
    { error: "a mapping" },
  )
  .prefault({})
  .describe("The reverse proxy (nginx) in front of every app.");

const postgresSchema = z
  .strictObject(
    {
      image: imageRef.optional().describe("PostgreSQL image run as a platform container (default postgres:15-bookworm). Not with url."),
      url: z
        .string({ error: "a postgres:// URL" })
        .regex(/^postgres(ql)?:\/\/\S+$/, "a postgres:// URL")
        .optional()
        .describe("Admin URL of an external PostgreSQL server, instead of a container. Not with image."),
      maxConnections: positiveInt("a connection count", 10_000).default(100).describe("Server max_connections."),
      reservedConnections: positiveInt("a connection count", 100)
        .default(5)
        .describe("Connections kept for the platform's admin role so it can always log in; fewer than maxConnections."),
    },
    { error: "a mapping with image or url" },
  )
  .prefault({})
  .describe("The shared PostgreSQL: one database and role per app environment.");

const controlSchema = z
  .strictObject(
    {
      image: imageRef.describe("berthd image; `bash scripts/images.sh berthd` builds berth-berthd:local from this checkout."),
      listen: z
        .string({ error: "HOST:PORT, like 127.0.0.1:8770" })
        .regex(/^(\d{1,3})(\.\d{1,3}){3}:\d{1,5}$/, "HOST:PORT, like 127.0.0.1:8770")
        .default("127.0.0.1:8770")
        .describe("Address of berthd's HTTPS API on the host."),
    },
    { error: "a mapping with image and listen" },
  )
  .optional()
  .describe(
    "Run berthd, the control plane, as a platform container that `berth apply` manages like the proxy and PostgreSQL (host network, the Docker socket, the state directory). Without it, run berthd as a systemd unit (deploy/berthd.service).",
  );

const tlsSchema = z
  .discriminatedUnion(
    "mode",
    [
      z.strictObject({ mode: z.literal("self-signed").describe("A self-signed certificate per environment.") }),
      z.strictObject({
        mode: z.literal("acme").describe("Certificates from an ACME CA (HTTP-01 through the proxy)."),
        email: z.string({ error: "an e-mail address" }).regex(EMAIL, "an e-mail address").describe("Account e-mail at the CA."),
        directory: httpUrl("an ACME directory URL")
          .default("https://acme-v02.api.letsencrypt.org/directory")
          .describe("ACME directory URL of the CA."),
      }),
      z.strictObject({ mode: z.literal("manual").describe("Certificate files given per environment (environments.<name>.tls).") }),
      z.strictObject({ mode: z.literal("off").describe("HTTP only.") }),
    ],
    { error: "a mapping whose mode is one of self-signed, acme, manual, off" },
  )
  .default({ mode: "self-signed" })
  .describe("How certificates are obtained.");

const backupTarget = z.discriminatedUnion(
  "type",
  [
    z.strictObject({
      type: z.literal("dir").describe("A directory on the host."),
      path: z.string({ error: "an absolute directory path" }).regex(/^\//, "an absolute directory path").describe("Absolute directory path."),
    }),
    z.strictObject({
      type: z.literal("s3").describe("An S3-compatible bucket."),
      bucket: z.string({ error: "an S3 bucket name" }).min(3, "an S3 bucket name").describe("Bucket name."),
      endpoint: httpUrl("an http(s) URL").optional().describe("Endpoint of an S3-compatible service other than AWS."),
      region: z.string().default("us-east-1").describe("Region of the bucket."),
      prefix: z.string().default("").describe("Key prefix of the backup objects."),
    }),
  ],
  { error: "a mapping whose type is one of dir, s3" },
);

const CRON_TEXT = 'a cron schedule of 5 fields like "0 2 * * *"';

const backupSchema = z
  .strictObject(
    {
      schedule: z
        .string({ error: CRON_TEXT })
        .superRefine((value, ctx) => {
          const problem = cronProblem(value);
          if (problem !== undefined) ctx.addIssue({ code: "custom", message: CRON_TEXT, params: { detail: problem } });
        })
        .default("0 2 * * *")
        .describe("When backups run: minute hour day-of-month month day-of-week, in numbers (host time)."),
      retention: z
        .strictObject({ days: positiveInt("a number of days", 3650).default(7).describe("Days a backup is kept.") }, { error: "a mapping with days" })
        .prefault({})
        .describe("How long backups are kept."),
      encrypt: z.boolean({ error: "true or false" }).default(false).describe("Encrypt backups before they leave the host."),
      targets: z.array(backupTarget, { error: "a list of backup targets" }).default([]).describe("Where backups are written."),
    },
    { error: "a mapping" },
  )
  .prefault({})
  .describe("Scheduled, verified backups of every database.");

const alertChannel = z.discriminatedUnion(
  "type",
  [
    z.strictObject({
      type: z.literal("webhook").describe("An HTTP POST of the alert as JSON."),
      name: name(32).describe("Channel name, unique among the channels."),
      url: httpUrl("an http(s) URL").describe("URL the alert is posted to."),
    }),
    z.strictObject({
      type: z.literal("email").describe("An e-mail."),
      name: name(32).describe("Channel name, unique among the channels."),
      to: z
        .array(z.string().regex(EMAIL, "an e-mail address"), { error: "a list of e-mail addresses" })
        .min(1, "at least one e-mail address")
        .describe("Recipients."),
      smtp: z.string().regex(/^smtps?:\/\/\S+$/, "an smtp:// URL").optional().describe("SMTP server URL."),
    }),
  ],
  { error: "a mapping whose type is one of webhook, email" },
);

export const platformSchema = z
  .strictObject(
    {
      name: name(32).describe("Name of this installation; prefixes its Docker objects."),
      proxy: proxySchema,
      postgres: postgresSchema,
      control: controlSchema,
      tls: tlsSchema,
      backup: backupSchema,
      alerts: z
        .strictObject(
          { channels: z.array(alertChannel, { error: "a list of channels" }).default([]).describe("Channels every alert is sent to.") },
          { error: "a mapping" },
        )
        .prefault({})
        .describe("Where alerts are sent."),
      defaults: z
        .strictObject(
          {
            resources: resourcesDefaultsSchema,
            health: z
              .strictObject(
                {
                  interval: duration.prefault("5s").describe("Time between checks."),
                  timeout: duration.prefault("3s").describe("Time a check may take."),
                  retries: positiveInt("a retry count", 100).default(3).describe("Failed checks in a row before the container is unhealthy."),
                  startPeriod: duration
                    .prefault("30s")
                    .describe("Start-up time during which failed checks do not count; the container is healthy at its first passing check."),
                },
                { error: "a mapping" },
              )
              .prefault({})
              .describe("Health-check timing of components that do not set their own."),
          },
          { error: "a mapping" },
        )
        .prefault({})
        .describe("Defaults for every tenant component."),
    },
    { error: "a mapping (the platform file)" },
  )
  .describe("The platform file: one berth installation.");

const healthSchema = z
  .union(
    [
      z.string().transform((path) => ({ path })),
      z.strictObject({
        path: z.string({ error: "an HTTP path starting with /" }).optional().describe("Path checked (default /)."),
        interval: duration.optional().describe("Time between checks (default: the platform's defaults.health)."),
        timeout: duration.optional().describe("Time a check may take (default: the platform's defaults.health)."),
        retries: positiveInt("a retry count", 100).optional().describe("Failed checks in a row before unhealthy (default: the platform's)."),
        startPeriod: duration.optional().describe("Start-up time during which failed checks do not count (default: the platform's defaults.health.startPeriod)."),
      }),
    ],
    { error: "a path like /health, or a mapping with path, interval, timeout, retries" },
  )
  .pipe(
    z.object({
      // The path is quoted into the health command a shell runs in the container (plan.ts
      // healthTest): quotes, '$', '`' and '\' would be read by that shell, so URL characters only.
      path: z
        .string()
        .regex(/^\/[A-Za-z0-9._~%/?=&+,:@-]*$/, "an HTTP path starting with /, of letters, digits and - . _ ~ % / ? = & + , : @")
        .default("/"),
      interval: z.number().optional(),
      timeout: z.number().optional(),
      retries: z.number().optional(),
      startPeriod: z.number().optional(),
    }),
  )
  .describe("HTTP health check, as a path (`health: /health`) or a mapping; healthy when the path answers 2xx/3xx.");

const relativePath = (p: string) => !p.startsWith("/") && !p.split("/").includes("..");

const buildSchema = z
  .union(
    [
      z.string().transform((context) => ({ context, dockerfile: "Dockerfile" })),
      z.strictObject({
        context: z.string({ error: "a directory inside the app's source" }).describe("Build context: a directory inside the app's source."),
        dockerfile: z.string({ error: "a Dockerfile path" }).default("Dockerfile").describe("Dockerfile path inside the context."),
      }),
    ],
    { error: "a directory inside the app's source, or a mapping with context and dockerfile" },
  )
  .pipe(
    z.object({
      context: z.string().refine(relativePath, "a relative directory inside the app's source (no '..')"),
      dockerfile: z.string().refine(relativePath, "a relative Dockerfile path (no '..')"),
    }),
  )
  .describe("Build the component's image from the app's source: a directory (`build: backend`) or a mapping. Not with image.");

const SECRETS_AS_TEXT = "one of env, files";

const secretsAs = z.enum(["env", "files"], { error: SECRETS_AS_TEXT });

const SECRETS_MAPPING_TEXT = "a mapping with as (env or files)";

const appSecretsSchema = z.strictObject(
  {
    as: secretsAs
      .default("env")
      .describe(
        "env: each secret is an environment variable (visible in docker inspect). files: each secret is a read-only file /run/secrets/NAME, kept on a tmpfs of the host and not in the container's configuration.",
      ),
  },
  { error: SECRETS_MAPPING_TEXT },
);

const componentSecretsSchema = z.strictObject(
  { as: secretsAs.describe("env or files, for this component's containers (default: the app's secrets.as).") },
  { error: SECRETS_MAPPING_TEXT },
);

const componentSchema = z
  .strictObject(
    {
      build: buildSchema.optional(),
      image: imageRef.optional().describe("Run this image instead of building one. Not with build."),
      port: port.describe("Port the component listens on inside its container."),
      health: healthSchema.optional(),
      resources: resourcesSchema.optional(),
      replicas: positiveInt("a replica count", 20).default(1).describe("Number of containers; more than 1 adds -1, -2, … to their names."),
      env: envMap,
      release: z
        .array(z.string({ error: "a command argument (string)" }), { error: "a command as a list of arguments, like [node, migrate.js]" })
        .min(1, "a command as a list of arguments, like [node, migrate.js]")
        .optional()
        .describe("Release command (argv) run once per deploy before traffic moves, e.g. migrations."),
      database: z.boolean({ error: "true or false" }).default(false).describe("Inject DATABASE_URL of the environment's database."),
      capabilities: z
        .array(z.string().regex(/^[A-Z][A-Z_]+$/, "a Linux capability name like NET_BIND_SERVICE"), { error: "a list of capability names" })
        .default([])
        .describe("Linux capabilities to keep; all others are dropped."),
      user: z
        .string({ error: "a user name or uid[:gid]" })
        .regex(/^[a-z0-9_][a-z0-9_-]*(:[a-z0-9_-]+)?$|^\d+(:\d+)?$/, "a user name or uid[:gid]")
        .optional()
        .describe("User the container runs as (default: the image's)."),
      secrets: componentSecretsSchema.optional().describe("How this component's containers get the environment's secrets (default: the app's secrets)."),
    },
    { error: "a mapping describing the component" },
  )
  .describe("One container image of an app.");

const routeSchema = z
  .strictObject(
    {
      path: z
        .string({ error: "a path prefix like /api or a regex like ^/(api|ical)" })
        // Written into nginx's `location`: quotes, ';', braces and '#' (a comment) would end it early.
        .regex(/^(\/|\^)[^\s"';{}#]*$/, "a path prefix starting with / or a regex starting with ^, without spaces, quotes, '#', ';' or braces")
        .describe("A path prefix (`/api`) or, starting with ^, a regular expression (`^/(api|ical)`)."),
      to: name(40).describe("Component that serves the route."),
      limit: name(32).default("general").describe("Rate-limit class of the platform's proxy.rateLimits."),
    },
    { error: "a mapping with path, to and limit" },
  )
  .describe("Requests whose path matches go to a component.");

const componentOverride = z
  .strictObject(
    {
      replicas: positiveInt("a replica count", 20).optional().describe("Replicas in this environment."),
      resources: resourcesSchema.optional(),
      env: envMap.optional().describe("Variables added to the component's env in this environment."),
    },
    { error: "a mapping with replicas, resources, env" },
  )
  .describe("What differs for one component in this environment.");

const environmentSchema = z
  .strictObject(
    {
      domains: z
        .array(hostname, { error: "a list of domain names" })
        .min(1, "at least one domain name")
        .describe("Domain names served; each may be used by one environment only."),
      env: envMap.describe("Variables for every component of this environment."),
      components: z
        .record(name(40), componentOverride, { error: "a mapping of component name to overrides" })
        .default({})
        .describe("Per-component overrides: replicas, resources, env."),
      maintenance: z.boolean({ error: "true or false" }).optional().describe("Serve the maintenance page (default: the app's maintenance)."),
      tls: z
        .strictObject(
          {
            cert: z.string({ error: "a certificate file path" }).describe("Certificate (chain) file, PEM."),
            key: z.string({ error: "a key file path" }).describe("Private key file, PEM."),
          },
          { error: "a mapping with cert and key" },
        )
        .optional()
        .describe("Certificate files when the platform's tls.mode is manual."),
    },
    { error: "a mapping with domains" },
  )
  .describe("One environment of an app: its own network, database, containers and server block.");

const CSP_DEFAULT = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'self'";

export const appSchema = z
  .strictObject(
    {
      name: name(40).describe("App name; part of container, network and database names."),
      source: z
        .union(
          [
            z.strictObject({
              git: z
                .string({ error: "a git URL" })
                .regex(/^(https?|ssh|file|git):\/\/\S+$|^[^\s:]+@[^\s:]+:\S+$/, "a git URL (https://, ssh://, file://)")
                .describe("Git repository URL."),
              ref: z.string().regex(/^[^\s~^:?*[\\]+$/, "a git ref").default("main").describe("Branch, tag or commit."),
            }),
            z.strictObject({ path: z.string({ error: "a directory path relative to the app file" }).describe("Directory, relative to the app file.") }),
          ],
          { error: "a mapping with git (and ref), or with path" },
        )
        .optional()
        .describe("Where components with `build` get their source: a git repository, or a local directory."),
      components: z
        .record(name(40), componentSchema, { error: "a mapping of component name to component" })
        .refine((c) => Object.keys(c).length > 0, "at least one component")
        .describe("The app's components by name; each runs as its own container(s) in every environment."),
      routes: z
        .array(routeSchema, { error: "a list of routes" })
        .min(1, "at least one route")
        .describe("Which component serves which paths, tried in order."),
      environments: z
        .record(name(20), environmentSchema, { error: "a mapping of environment name to environment" })
        .refine((e) => Object.keys(e).length > 0, "at least one environment")
        .describe("The app's environments by name (e.g. production, staging)."),
      headers: z
        .strictObject(
          {
            csp: safeText("a Content-Security-Policy").default(CSP_DEFAULT).describe("Content-Security-Policy header."),
            frameOptions: z.enum(["DENY", "SAMEORIGIN"], { error: "one of DENY, SAMEORIGIN" }).default("SAMEORIGIN").describe("X-Frame-Options header."),
            referrerPolicy: safeText("a Referrer-Policy").default("strict-origin-when-cross-origin").describe("Referrer-Policy header."),
            hsts: z
              .union(
                [
                  z.boolean(),
                  z.strictObject({
                    maxAge: duration.describe("How long browsers remember to use HTTPS only."),
                    includeSubdomains: z.boolean({ error: "true or false" }).default(false).describe("Apply to subdomains too."),
                    preload: z.boolean({ error: "true or false" }).default(false).describe("Ask to be preloaded by browsers."),
                  }),
                ],
                { error: "true, false, or a mapping with maxAge, includeSubdomains, preload" },
              )
              .default(false)
              .describe("Strict-Transport-Security: false, true (one year), or a mapping."),
          },
          { error: "a mapping" },
        )
        .prefault({})
        .describe("Security headers added to every response of the app."),
      maintenance: z.boolean({ error: "true or false" }).default(false).describe("Serve the maintenance page in every environment."),
      secrets: appSecretsSchema
        .prefault({})
        .describe("How containers get their environment's secrets (berth secrets set): as environment variables, or as files in /run/secrets."),
      database: z
        .strictObject(
          {
            connectionLimit: positiveInt("a connection count", 1000).default(20).describe("Connections the role may hold."),
            statementTimeout: duration.prefault("30s").describe("Longest a statement may run."),
            idleInTransactionTimeout: duration.prefault("1m").describe("Longest a transaction may sit idle."),
          },
          { error: "a mapping" },
        )
        .prefault({})
        .describe("Limits of each environment's database role."),
    },
    { error: "a mapping (an app file)" },
  )
  .describe("An app (tenant): components, routes and environments.");

export type PlatformSpec = z.output<typeof platformSchema>;
export type AppSpec = z.output<typeof appSchema>;
export type ComponentSpec = z.output<typeof componentSchema>;
export type EnvironmentSpec = z.output<typeof environmentSchema>;
export type RouteSpec = z.output<typeof routeSchema>;
export type ResourcesSpec = z.output<typeof resourcesSchema>;
