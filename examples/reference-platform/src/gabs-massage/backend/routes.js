// gabs-massage's API: a visit counter on / and appointment bookings with a note.
import { HttpError, readJson } from "./lib/http.js";
import { platformRoutes } from "./lib/platform-routes.js";

const NAME_MAX = 100;
const NOTE_MAX = 500;
// A date and time with an explicit offset, so "10:00" means one instant for everyone.
const DATE_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})$/;

/**
 * Checks a POST /api/bookings body. Returns the clean booking or throws a 400 that names
 * every bad field.
 */
export function parseBooking(body) {
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw new HttpError(400, "invalid_input", 'Expected a JSON object like {"name": "Ada", "starts_at": "2026-05-01T10:00:00+02:00", "note": "60 min"}.');
  }
  const details = [];
  for (const field of Object.keys(body)) {
    if (!["name", "starts_at", "note"].includes(field)) details.push({ field, message: "unknown field; only name, starts_at and note are accepted" });
  }
  const name = typeof body.name === "string" ? body.name.trim() : undefined;
  if (name === undefined) details.push({ field: "name", message: "required, a string" });
  else if (name.length === 0 || name.length > NAME_MAX) details.push({ field: "name", message: `must be 1-${NAME_MAX} characters` });

  let startsAt;
  if (typeof body.starts_at !== "string") {
    details.push({ field: "starts_at", message: "required, a date and time like 2026-05-01T10:00:00+02:00" });
  } else {
    startsAt = new Date(body.starts_at);
    if (!DATE_TIME.test(body.starts_at) || Number.isNaN(startsAt.getTime())) {
      details.push({ field: "starts_at", message: `not a date and time with an offset (like 2026-05-01T10:00:00Z): "${body.starts_at}"` });
    }
  }

  const note = body.note === undefined ? "" : body.note;
  if (typeof note !== "string") details.push({ field: "note", message: "must be a string" });
  else if (note.length > NOTE_MAX) details.push({ field: "note", message: `must be at most ${NOTE_MAX} characters` });

  if (details.length > 0) {
    const message = details.map((d) => `${d.field}: ${d.message}`).join("; ");
    throw new HttpError(400, "invalid_input", message, details);
  }
  return { name, startsAt, note };
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
      path: "/",
      handler: async () => {
        // One statement, so concurrent visits never lose an increment.
        const { rows } = await db.query(
          "insert into visits (id, count) values (1, 1) on conflict (id) do update set count = visits.count + 1 returning count",
        );
        return { json: { visits: Number(rows[0].count) } };
      },
    },
    {
      method: "GET",
      path: "/api/bookings",
      handler: async () => {
        const { rows } = await db.query("select id, name, starts_at, note, created_at from bookings order by starts_at, id limit 100");
        return { json: { bookings: rows } };
      },
    },
    {
      method: "POST",
      path: "/api/bookings",
      handler: async ({ req, log }) => {
        const booking = parseBooking(await readJson(req));
        const { rows } = await db.query(
          "insert into bookings (name, starts_at, note) values ($1, $2, $3) returning id, name, starts_at, note, created_at",
          [booking.name, booking.startsAt, booking.note],
        );
        log.info("booking created", { booking_id: rows[0].id });
        return { status: 201, json: rows[0] };
      },
    },
  ];
}
