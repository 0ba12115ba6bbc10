// The spec's one schema: validation, defaults, normalisation, the docs and the JSON Schema
// for editors all come from here. Every leaf states what it expects in words a user reads
// in an error ("expected a port number 1-65535"), so messages never depend on zod's wording.
import { z } from "zod";
import { parseCpus, parseDuration, parseMemory } from "./units.js";

export const NAME_PATTERN = /^[a-z][a-z0-9-]*[a-z0-9]$|^[a-z]$/;
const NAME_TEXT = "a lowercase name of letters, digits and '-' (starting with a letter, not ending with '-')";
const ENV_KEY_PATTERN = /^[A-Za-z_][A-Za-z0-9_]*$/;
const HOSTNAME_PATTERN = /^(?=.{1,253}$)(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;

const name = (max: number) =>
  z
    .string({ error: NAME_TEXT })
    .regex(NAME_PATTERN, NAME_TEXT)
    .max(max, `a name of at most ${max} characters`);

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
  .describe("Memory size: a number of bytes or a number with a unit K, M, G (binary, as Docker reads them).");

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
  .describe("Duration: a number with a unit ms, s, m or h (a bare number is seconds). Normalised to milliseconds.");

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
  .describe("CPU count: a number greater than 0, e.g. 0.5 for half a core.");

const port = z
  .int({ error: "a port number 1-65535" })
  .min(1, "a port number 1-65535")
  .max(65535, "a port number 1-65535");

const positiveInt = (what: string, max: number) =>
  z
    .int({ error: `${what} (a whole number 1-${max})` })
    .min(1, `${what} (a whole number 1-${max})`)
    .max(max, `${what} (a whole number 1-${max})`);

const envValue = z
  .union([z.string(), z.number(), z.boolean()], { error: "a string, number or boolean value" })
  .transform((value) => String(value));

const envMap = z
  .record(z.string().regex(ENV_KEY_PATTERN, "an environment variable name of letters, digits and '_'"), envValue)
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
  .strictObject({
    cpus: cpus.optional().describe("CPU limit."),
    memory: memory.optional().describe("Memory limit (hard; the container is killed beyond it)."),
    pids: positiveInt("a process limit", 100_000).optional().describe("Maximum number of processes."),
  }, { error: "a mapping with cpus, memory and pids" })
  .describe("Resource limits. Unset fields take the platform defaults: no tenant runs unlimited.");

export const resourcesDefaultsSchema = z
  .strictObject({
    cpus: cpus.default(0.5),
    memory: memory.default(256 * 1024 ** 2),
    pids: positiveInt("a process limit", 100_000).default(256),
  }, { error: "a mapping with cpus, memory and pids" })
  .default({ cpus: 0.5, memory: 256 * 1024 ** 2, pids: 256 })
  .describe("Limits applied to every tenant container that does not set its own.");

const rateLimitClass = z.strictObject({
  rate: positiveInt("requests per second", 100_000).describe("Requests per second per client IP."),
  burst: z
    .int({ error: "a burst size (a whole number 0-100000)" })
    .min(0, "a burst size (a whole number 0-100000)")
    .max(100_000, "a burst size (a whole number 0-100000)")
    .describe("Requests allowed above the rate before answering 429."),
}, { error: "a mapping with rate and burst" });

const proxySchema = z
  .strictObject({
    bind: z
      .string({ error: "an IPv4 address" })
      .regex(/^(\d{1,3})(\.\d{1,3}){3}$/, "an IPv4 address like 127.0.0.1 or 0.0.0.0")
      .default("0.0.0.0")
      .describe("Host address the proxy's ports are published on."),
    httpPort: port.default(80).describe("Host port for HTTP."),
    httpsPort: port.default(443).describe("Host port for HTTPS."),
    image: imageRef.default("nginx:1.27-bookworm").describe("nginx image of the proxy container."),
    rateLimits: z
      .record(name(32), rateLimitClass, { error: "a mapping of class name to { rate, burst }" })
      .default({ general: { rate: 100, burst: 50 }, api: { rate: 20, burst: 20 } })
      .describe("Rate-limit classes (per client IP) that routes refer to by name."),
  }, { error: "a mapping" })
  .default({
    bind: "0.0.0.0",
    httpPort: 80,
    httpsPort: 443,
    image: "nginx:1.27-bookworm",
    rateLimits: { general: { rate: 100, burst: 50 }, api: { rate: 20, burst: 20 } },
  })
  .describe("The reverse proxy (nginx) in front of every app.");

const postgresSchema = z
  .strictObject({
    image: imageRef.optional().describe("PostgreSQL image run as a platform container (default postgres:15-bookworm)."),
    url: z
      .string({ error: "a postgres:// URL" })
      .regex(/^postgres(ql)?:\/\/\S+$/, "a postgres:// URL")
      .optional()
      .describe("Admin URL of an external PostgreSQL server, instead of a container."),
    maxConnections: positiveInt("a connection count", 10_000).default(100).describe("Server max_connections."),
    reservedConnections: positiveInt("a connection count", 100)
      .default(5)
      .describe("Connections kept for the platform's admin role so it can always log in."),
  }, { error: "a mapping with image or url" })
  .default({ maxConnections: 100, reservedConnections: 5 })
  .describe("The shared PostgreSQL: one database and role per app environment.");

const tlsSchema = z
  .discriminatedUnion(
    "mode",
    [
      z.strictObject({ mode: z.literal("self-signed") }),
      z.strictObject({
        mode: z.literal("acme"),
        email: z.string({ error: "an e-mail address" }).regex(/^[^@\s]+@[^@\s]+$/, "an e-mail address"),
        directory: z
          .string({ error: "an ACME directory URL" })
          .regex(/^https?:\/\/\S+$/, "an ACME directory URL")
          .default("https://acme-v02.api.letsencrypt.org/directory"),
      }),
      z.strictObject({ mode: z.literal("manual") }),
      z.strictObject({ mode: z.literal("off") }),
    ],
    { error: "a mapping whose mode is one of self-signed, acme, manual, off" },
  )
  .default({ mode: "self-signed" })
  .describe(
    "How certificates are obtained: self-signed per environment, ACME (HTTP-01 through the proxy), " +
      "manual files given per environment, or off (HTTP only).",
  );

const cronField = /^(\*|\d+(-\d+)?)(\/\d+)?(,(\*|\d+(-\d+)?)(\/\d+)?)*$/;
const backupTarget = z.discriminatedUnion(
  "type",
  [
    z.strictObject({
      type: z.literal("dir"),
      path: z.string({ error: "an absolute directory path" }).regex(/^\//, "an absolute directory path"),
    }),
    z.strictObject({
      type: z.literal("s3"),
      bucket: z.string({ error: "an S3 bucket name" }).min(3, "an S3 bucket name"),
      endpoint: z.string().regex(/^https?:\/\/\S+$/, "an http(s) URL").optional(),
      region: z.string().default("us-east-1"),
      prefix: z.string().default(""),
    }),
  ],
  { error: "a mapping whose type is one of dir, s3" },
);

const backupSchema = z
  .strictObject({
    schedule: z
      .string({ error: "a cron schedule of 5 fields like \"0 2 * * *\"" })
      .refine((value) => {
        const fields = value.trim().split(/\s+/);
        return fields.length === 5 && fields.every((field) => cronField.test(field));
      }, "a cron schedule of 5 fields like \"0 2 * * *\"")
      .default("0 2 * * *"),
    retention: z
      .strictObject({ days: positiveInt("a number of days", 3650).default(7) }, { error: "a mapping with days" })
      .default({ days: 7 }),
    encrypt: z.boolean({ error: "true or false" }).default(false),
    targets: z.array(backupTarget, { error: "a list of backup targets" }).default([]),
  }, { error: "a mapping" })
  .default({ schedule: "0 2 * * *", retention: { days: 7 }, encrypt: false, targets: [] })
  .describe("Scheduled, verified backups of every database.");

const alertChannel = z.discriminatedUnion(
  "type",
  [
    z.strictObject({
      type: z.literal("webhook"),
      name: name(32),
      url: z.string({ error: "an http(s) URL" }).regex(/^https?:\/\/\S+$/, "an http(s) URL"),
    }),
    z.strictObject({
      type: z.literal("email"),
      name: name(32),
      to: z.array(z.string().regex(/^[^@\s]+@[^@\s]+$/, "an e-mail address"), { error: "a list of e-mail addresses" }).min(1, "at least one e-mail address"),
      smtp: z.string().regex(/^smtps?:\/\/\S+$/, "an smtp:// URL").optional(),
    }),
  ],
  { error: "a mapping whose type is one of webhook, email" },
);

export const platformSchema = z
  .strictObject({
    name: name(32).describe("Name of this installation; prefixes its Docker objects."),
    proxy: proxySchema,
    postgres: postgresSchema,
    tls: tlsSchema,
    backup: backupSchema,
    alerts: z
      .strictObject({ channels: z.array(alertChannel, { error: "a list of channels" }).default([]) }, { error: "a mapping" })
      .default({ channels: [] })
      .describe("Where alerts are sent."),
    defaults: z
      .strictObject({
        resources: resourcesDefaultsSchema,
        health: z
          .strictObject({
            interval: duration.default(5000),
            timeout: duration.default(3000),
            retries: positiveInt("a retry count", 100).default(3),
          }, { error: "a mapping" })
          .default({ interval: 5000, timeout: 3000, retries: 3 }),
      }, { error: "a mapping" })
      .default({ resources: { cpus: 0.5, memory: 256 * 1024 ** 2, pids: 256 }, health: { interval: 5000, timeout: 3000, retries: 3 } })
      .describe("Defaults for every tenant component."),
  }, { error: "a mapping (the platform file)" })
  .describe("The platform file: one berth installation.");

const healthSchema = z
  .union(
    [
      z.string().transform((path) => ({ path })),
      z.strictObject({
        path: z.string({ error: "an HTTP path starting with /" }).optional(),
        interval: duration.optional(),
        timeout: duration.optional(),
        retries: positiveInt("a retry count", 100).optional(),
        startPeriod: duration.optional(),
      }),
    ],
    { error: "a path like /health, or a mapping with path, interval, timeout, retries" },
  )
  .pipe(
    z.object({
      path: z.string().regex(/^\/[^\s"]*$/, "an HTTP path starting with / (no spaces or quotes)").default("/"),
      interval: z.number().optional(),
      timeout: z.number().optional(),
      retries: z.number().optional(),
      startPeriod: z.number().optional(),
    }),
  )
  .describe("HTTP health check; the container is healthy when the path answers 2xx/3xx.");

const buildSchema = z
  .union(
    [
      z.string().transform((context) => ({ context, dockerfile: "Dockerfile" })),
      z.strictObject({
        context: z.string({ error: "a directory inside the app's source" }),
        dockerfile: z.string({ error: "a Dockerfile path" }).default("Dockerfile"),
      }),
    ],
    { error: "a directory inside the app's source, or a mapping with context and dockerfile" },
  )
  .pipe(
    z.object({
      context: z
        .string()
        .refine((p) => !p.startsWith("/") && !p.split("/").includes(".."), "a relative directory inside the app's source (no '..')"),
      dockerfile: z.string().refine((p) => !p.startsWith("/") && !p.split("/").includes(".."), "a relative Dockerfile path (no '..')"),
    }),
  )
  .describe("Build the component's image from the app's source.");

const componentSchema = z
  .strictObject({
    build: buildSchema.optional(),
    image: imageRef.optional().describe("Run this image instead of building one."),
    port: port.describe("Port the component listens on inside its container."),
    health: healthSchema.optional(),
    resources: resourcesSchema.optional(),
    replicas: positiveInt("a replica count", 20).default(1),
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
    user: z.string().regex(/^[a-z0-9_][a-z0-9_-]*(:[a-z0-9_-]+)?$|^\d+(:\d+)?$/, "a user name or uid[:gid]").optional(),
  }, { error: "a mapping describing the component" })
  .describe("One container image of an app.");

const routeSchema = z.strictObject({
  path: z
    .string({ error: "a path prefix like /api or a regex like ^/(api|ical)" })
    .regex(/^(\/|\^)[^\s"';{}]*$/, "a path prefix starting with / or a regex starting with ^, without spaces, quotes, ';' or braces"),
  to: name(40).describe("Component that serves the route."),
  limit: name(32).default("general").describe("Rate-limit class of the platform's proxy."),
}, { error: "a mapping with path, to and limit" });

const componentOverride = z.strictObject({
  replicas: positiveInt("a replica count", 20).optional(),
  resources: resourcesSchema.optional(),
  env: envMap.optional(),
}, { error: "a mapping with replicas, resources, env" });

const environmentSchema = z
  .strictObject({
    domains: z.array(hostname, { error: "a list of domain names" }).min(1, "at least one domain name"),
    env: envMap,
    components: z.record(name(40), componentOverride, { error: "a mapping of component name to overrides" }).default({}),
    maintenance: z.boolean({ error: "true or false" }).optional(),
    tls: z
      .strictObject({ cert: z.string({ error: "a certificate file path" }), key: z.string({ error: "a key file path" }) }, { error: "a mapping with cert and key" })
      .optional()
      .describe("Certificate files when the platform's tls.mode is manual."),
  }, { error: "a mapping with domains" })
  .describe("One environment of an app: its own network, database, containers and server block.");

export const appSchema = z
  .strictObject({
    name: name(40).describe("App name; part of container, network and database names."),
    source: z
      .union(
        [
          z.strictObject({
            git: z.string({ error: "a git URL" }).regex(/^(https?|ssh|file|git):\/\/\S+$|^[^\s:]+@[^\s:]+:\S+$/, "a git URL (https://, ssh://, file://)"),
            ref: z.string().regex(/^[^\s~^:?*[\\]+$/, "a git ref").default("main"),
          }),
          z.strictObject({ path: z.string({ error: "a directory path relative to the app file" }) }),
        ],
        { error: "a mapping with git (and ref), or with path" },
      )
      .optional()
      .describe("Where components with `build` get their source: a git repository, or a local directory."),
    components: z
      .record(name(40), componentSchema, { error: "a mapping of component name to component" })
      .refine((c) => Object.keys(c).length > 0, "at least one component"),
    routes: z.array(routeSchema, { error: "a list of routes" }).min(1, "at least one route"),
    environments: z
      .record(name(20), environmentSchema, { error: "a mapping of environment name to environment" })
      .refine((e) => Object.keys(e).length > 0, "at least one environment"),
    headers: z
      .strictObject({
        csp: safeText("a Content-Security-Policy").default(
          "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'self'",
        ),
        frameOptions: z.enum(["DENY", "SAMEORIGIN"], { error: "one of DENY, SAMEORIGIN" }).default("SAMEORIGIN"),
        referrerPolicy: safeText("a Referrer-Policy").default("strict-origin-when-cross-origin"),
        hsts: z
          .union([z.boolean(), z.strictObject({ maxAge: duration, includeSubdomains: z.boolean().default(false), preload: z.boolean().default(false) })], {
            error: "true, false, or a mapping with maxAge, includeSubdomains, preload",
          })
          .default(false),
      }, { error: "a mapping" })
      .default({
        csp: "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'self'",
        frameOptions: "SAMEORIGIN",
        referrerPolicy: "strict-origin-when-cross-origin",
        hsts: false,
      })
      .describe("Security headers added to every response of the app."),
    maintenance: z.boolean({ error: "true or false" }).default(false).describe("Serve the maintenance page in every environment."),
    database: z
      .strictObject({
        connectionLimit: positiveInt("a connection count", 1000).default(20),
        statementTimeout: duration.default(30_000),
        idleInTransactionTimeout: duration.default(60_000),
      }, { error: "a mapping" })
      .default({ connectionLimit: 20, statementTimeout: 30_000, idleInTransactionTimeout: 60_000 })
      .describe("Limits of each environment's database role."),
  }, { error: "a mapping (an app file)" })
  .describe("An app (tenant): components, routes and environments.");

export type PlatformSpec = z.output<typeof platformSchema>;
export type AppSpec = z.output<typeof appSchema>;
export type ComponentSpec = z.output<typeof componentSchema>;
export type EnvironmentSpec = z.output<typeof environmentSchema>;
export type RouteSpec = z.output<typeof routeSchema>;
export type ResourcesSpec = z.output<typeof resourcesSchema>;
