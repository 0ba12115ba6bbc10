// pg_hba.conf for the shared server: the admin everywhere, each tenant role into its own
// database only, everything else rejected. Pure: same plans, same bytes.
//
// This is the second fence: a tenant role has no CONNECT on other databases anyway, but
// with these lines it is turned away before authentication, and a role added by hand
// (or a future privilege mistake) reaches nothing.
import { BerthError } from "../errors.js";
import type { DatabasePlan } from "../plan/types.js";

export interface HbaOptions {
  /** The admin role berth connects as (POSTGRES_USER). */
  admin: string;
  plans: readonly DatabasePlan[];
  /**
   * How the admin authenticates on the unix socket (`docker exec … psql`). Default
   * scram-sha-256; `peer` only works when the admin's name is the OS user's (postgres).
   */
  localAdminMethod?: "scram-sha-256" | "peer";
}

/**
 * A name quoted for pg_hba.conf: quoted, it cannot be read as a keyword (all, sameuser,
 * replication), a group (+name) or an include (@file). The file format has no escape for
 * a double quote or a line break, so such names are refused.
 */
function hbaName(name: string): string {
  if (!/^[^"\\\s\p{Cc}]+$/u.test(name)) {
    throw new BerthError("BAD_ARGUMENT", `cannot write role or database name ${JSON.stringify(name)} into pg_hba.conf`, "Use names of letters, digits and _.");
  }
  return `"${name}"`;
}

export function renderHba(options: HbaOptions): string {
  const admin = hbaName(options.admin);
  const rows: string[][] = [
    ["local", "all", admin, "", options.localAdminMethod ?? "scram-sha-256"],
    ["host", "all", admin, "all", "scram-sha-256"],
    ...[...options.plans]
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
      .map((plan) => ["host", hbaName(plan.name), hbaName(plan.role), "all", "scram-sha-256"]),
    ["local", "all", "all", "", "reject"],
    ["host", "all", "all", "all", "reject"],
  ];
  const header = ["# TYPE", "DATABASE", "USER", "ADDRESS", "METHOD"];
  const widths = header.map((_, column) => Math.max(...[header, ...rows].map((row) => row[column]!.length)));
  const format = (row: string[]) =>
    row
      .map((cell, column) => (column === row.length - 1 ? cell : cell.padEnd(widths[column]!)))
      .join("  ")
      .trimEnd();
  return [
    "# pg_hba.conf written by berth: edits here are overwritten at the next apply.",
    "# First match wins. Each tenant role reaches its own database only; the last lines reject the rest.",
    format(header),
    ...rows.map(format),
    "",
  ].join("\n");
}
