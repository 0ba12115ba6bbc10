// Parsers for the human units the spec accepts: memory sizes, durations, CPU counts.
// Each returns undefined for input it cannot read, so the schema can say what it expected.

const MEMORY_UNITS: Record<string, number> = {
  "": 1,
  b: 1,
  k: 1024,
  kb: 1024,
  ki: 1024,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1024 ** 2,
  mi: 1024 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1024 ** 3,
  gi: 1024 ** 3,
  gib: 1024 ** 3,
};

/** "256M", "1G", "512Mi", 1048576 → bytes (binary units, as Docker reads them). */
export function parseMemory(input: string | number): number | undefined {
  if (typeof input === "number") return Number.isInteger(input) && input > 0 ? input : undefined;
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(input);
  if (!match) return undefined;
  const factor = MEMORY_UNITS[match[2]!.toLowerCase()];
  if (factor === undefined) return undefined;
  const bytes = Math.round(Number(match[1]) * factor);
  return bytes > 0 ? bytes : undefined;
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** "500ms", "2s", "1m", "1h30m" → milliseconds. A bare number is seconds. */
export function parseDuration(input: string | number): number | undefined {
  if (typeof input === "number") return input >= 0 ? Math.round(input * 1000) : undefined;
  const text = input.trim();
  if (!/^(\d+(\.\d+)?(ms|s|m|h))+$/.test(text)) return undefined;
  let total = 0;
  for (const part of text.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)) {
    total += Number(part[1]) * DURATION_UNITS[part[2]!]!;
  }
  return Math.round(total);
}

/** 0.5, "1.5" → CPU count. */
export function parseCpus(input: string | number): number | undefined {
  const value = typeof input === "number" ? input : /^\s*\d+(\.\d+)?\s*$/.test(input) ? Number(input) : NaN;
  return Number.isFinite(value) && value > 0 ? value : undefined;
}

/** Bytes → the shortest exact spelling: 268435456 → "256M". */
export function formatMemory(bytes: number): string {
  for (const [unit, factor] of [["G", 1024 ** 3], ["M", 1024 ** 2], ["K", 1024]] as const) {
    if (bytes % factor === 0) return `${bytes / factor}${unit}`;
  }
  return `${bytes}B`;
}

/** Milliseconds → "2s", "500ms", "1m". */
export function formatDuration(ms: number): string {
  if (ms % 60_000 === 0 && ms > 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}

const CRON_FIELDS = [
  ["minute", 0, 59],
  ["hour", 0, 23],
  ["day of month", 1, 31],
  ["month", 1, 12],
  ["day of week", 0, 7],
] as const;

/** Why a 5-field cron schedule ("0 2 * * *") cannot be read, or undefined when it can. Numbers only, no names. */
export function cronProblem(schedule: string): string | undefined {
  const fields = schedule.trim() === "" ? [] : schedule.trim().split(/\s+/);
  if (fields.length !== 5) return `${fields.length} field${fields.length === 1 ? "" : "s"} instead of 5`;
  for (const [index, field] of fields.entries()) {
    const [what, min, max] = CRON_FIELDS[index]!;
    for (const part of field.split(",")) {
      const match = /^(?:\*|(\d+)(?:-(\d+))?)(?:\/(\d+))?$/.exec(part);
      if (!match) return `${what} "${field}" is not *, a number, a range or a list of them`;
      const [, from, to, step] = match;
      for (const value of [from, to]) {
        if (value !== undefined && (Number(value) < min || Number(value) > max)) return `${what} ${value} is outside ${min}-${max}`;
      }
      if (from !== undefined && to !== undefined && Number(to) < Number(from)) return `${what} range ${from}-${to} runs backwards`;
      if (step !== undefined && Number(step) === 0) return `${what} step /0 never matches`;
    }
  }
  return undefined;
}
