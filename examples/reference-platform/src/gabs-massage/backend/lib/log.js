// JSON-lines logger: one object per line on stdout, so the platform can ship and search
// container logs without parsing free text.
const LEVELS = { debug: 10, info: 20, warn: 30, error: 40 };

/**
 * @param {{ level?: string, fields?: object, write?: (line: string) => void }} [options]
 */
export function createLogger(options = {}) {
  const levelName = (options.level ?? "info").toLowerCase();
  if (!(levelName in LEVELS)) {
    throw new Error(`LOG_LEVEL: expected one of ${Object.keys(LEVELS).join(", ")}, got "${options.level}"`);
  }
  const threshold = LEVELS[levelName];
  const write = options.write ?? ((line) => process.stdout.write(line));
  const base = options.fields ?? {};

  function emit(level, msg, fields) {
    if (LEVELS[level] < threshold) return;
    const entry = { time: new Date().toISOString(), level, msg, ...base, ...fields };
    write(JSON.stringify(entry) + "\n");
  }

  return {
    debug: (msg, fields) => emit("debug", msg, fields),
    info: (msg, fields) => emit("info", msg, fields),
    warn: (msg, fields) => emit("warn", msg, fields),
    error: (msg, fields) => emit("error", msg, fields),
    child: (fields) => createLogger({ level: levelName, fields: { ...base, ...fields }, write }),
  };
}
