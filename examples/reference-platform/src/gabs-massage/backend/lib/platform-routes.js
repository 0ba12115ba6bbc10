// Routes every berth backend answers the same way: the health check the platform polls
// and the version a deploy can be verified with.
import { withTimeout } from "./http.js";

/**
 * @param {{ db: { query: Function }, version: object, isDraining: () => boolean, healthTimeoutMs?: number }} deps
 */
export function platformRoutes({ db, version, isDraining, healthTimeoutMs = 1500 }) {
  return [
    {
      method: "GET",
      path: "/health",
      quiet: true,
      handler: async () => {
        // Failing while draining takes this replica out of rotation before it stops.
        if (isDraining()) return { status: 503, json: { status: "draining" } };
        try {
          await withTimeout(db.query("select 1"), healthTimeoutMs, "the database");
          return { json: { status: "ok" } };
        } catch (err) {
          return { status: 503, json: { status: "unavailable", error: `database: ${err.message}` } };
        }
      },
    },
    {
      method: "GET",
      path: "/api/version",
      handler: async () => {
        let schema = null;
        try {
          const { rows } = await db.query("select max(version) as version from schema_migrations");
          schema = rows[0]?.version ?? null;
        } catch {
          // Not migrated yet or no database: the version of the code is still worth telling.
        }
        return { json: { ...version, schema_version: schema } };
      },
    },
  ];
}
