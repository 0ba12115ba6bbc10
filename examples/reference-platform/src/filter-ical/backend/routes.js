// filter-ical's API: calendar filters (a name and a pattern matched against event titles)
// and the iCalendar feed a calendar client subscribes to.
import { HttpError, readJson } from "./lib/http.js";
import { platformRoutes } from "./lib/platform-routes.js";

const NAME_MAX = 100;
const PATTERN_MAX = 200;

/**
 * Checks a POST /api/filters body. Returns the clean filter or throws a 400 that names
 * every bad field.
 */
export function parseFilter(body) {
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw new HttpError(400, "invalid_input", 'Expected a JSON object like {"name": "Work", "pattern": "standup|review"}.');
  }
  const details = [];
  for (const field of Object.keys(body)) {
    if (field !== "name" && field !== "pattern") details.push({ field, message: "unknown field; only name and pattern are accepted" });
  }
  const name = typeof body.name === "string" ? body.name.trim() : undefined;
  if (name === undefined) details.push({ field: "name", message: "required, a string" });
  else if (name.length === 0 || name.length > NAME_MAX) details.push({ field: "name", message: `must be 1-${NAME_MAX} characters` });

  const pattern = typeof body.pattern === "string" ? body.pattern : undefined;
  if (pattern === undefined) details.push({ field: "pattern", message: "required, a string (a regular expression)" });
  else if (pattern.length === 0 || pattern.length > PATTERN_MAX) details.push({ field: "pattern", message: `must be 1-${PATTERN_MAX} characters` });
  else {
    try {
      new RegExp(pattern, "u");
    } catch (err) {
      details.push({ field: "pattern", message: `not a valid regular expression: ${err.message}` });
    }
  }
  if (details.length > 0) {
    const message = details.map((d) => `${d.field}: ${d.message}`).join("; ");
    throw new HttpError(400, "invalid_input", message, details);
  }
  return { name, pattern };
}

function present(row) {
  return { id: row.id, name: row.name, pattern: row.pattern, created_at: row.created_at, ical_url: `/ical/${row.id}` };
}

// RFC 5545 text escaping and line folding (lines of at most 75 octets, CRLF endings).
function escapeText(value) {
  return value.replace(/\\/g, "\\\\").replace(/;/g, "\\;").replace(/,/g, "\\,").replace(/\r?\n/g, "\\n");
}

function fold(line) {
  const parts = [];
  let current = "";
  let octets = 0;
  for (const ch of line) {
    const size = Buffer.byteLength(ch);
    const limit = parts.length === 0 ? 75 : 74; // continuation lines start with a space
    if (octets + size > limit) {
      parts.push(current);
      current = "";
      octets = 0;
    }
    current += ch;
    octets += size;
  }
  parts.push(current);
  return parts.join("\r\n ");
}

function icalStamp(date) {
  return date.toISOString().replace(/[-:]/g, "").replace(/\.\d{3}/, "");
}

/** A minimal iCalendar document for one filter. */
export function renderCalendar(filter, now = new Date()) {
  const created = new Date(filter.created_at);
  const day = icalStamp(created).slice(0, 8);
  const lines = [
    "BEGIN:VCALENDAR",
    "VERSION:2.0",
    "PRODID:-//berth//filter-ical example//EN",
    "CALSCALE:GREGORIAN",
    `X-WR-CALNAME:${escapeText(filter.name)}`,
    "BEGIN:VEVENT",
    `UID:filter-${filter.id}@filter-ical.example`,
    `DTSTAMP:${icalStamp(now)}`,
    `DTSTART;VALUE=DATE:${day}`,
    `SUMMARY:${escapeText(`Filter "${filter.name}" created`)}`,
    `DESCRIPTION:${escapeText(`Events matching /${filter.pattern}/`)}`,
    "END:VEVENT",
    "END:VCALENDAR",
  ];
  return lines.map(fold).join("\r\n") + "\r\n";
}

/**
 * @param {{ db: { query: Function }, version: object, isDraining: () => boolean, healthTimeoutMs?: number }} deps
 */
export function createRoutes(deps) {
  const { db } = deps;
  return [
    ...platformRoutes(deps),
    {
      method: "GET",
      path: "/api/filters",
      handler: async () => {
        const { rows } = await db.query("select id, name, pattern, created_at from filters order by id desc limit 100");
        return { json: { filters: rows.map(present) } };
      },
    },
    {
      method: "POST",
      path: "/api/filters",
      handler: async ({ req, log }) => {
        const filter = parseFilter(await readJson(req));
        const { rows } = await db.query(
          "insert into filters (name, pattern) values ($1, $2) returning id, name, pattern, created_at",
          [filter.name, filter.pattern],
        );
        log.info("filter created", { filter_id: rows[0].id });
        return { status: 201, json: present(rows[0]) };
      },
    },
    {
      method: "GET",
      path: /^\/ical\/(?<id>[^/]+?)(?:\.ics)?$/,
      handler: async ({ params }) => {
        const id = /^[1-9]\d{0,8}$/.test(params.id) ? Number(params.id) : undefined;
        const rows = id === undefined ? [] : (await db.query("select id, name, pattern, created_at from filters where id = $1", [id])).rows;
        if (rows.length === 0) throw new HttpError(404, "not_found", `No calendar filter with id "${params.id}".`);
        return {
          text: renderCalendar(rows[0]),
          headers: { "Content-Type": "text/calendar; charset=utf-8", "Content-Disposition": `inline; filename="filter-${rows[0].id}.ics"` },
        };
      },
    },
  ];
}
