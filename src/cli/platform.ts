// Commands that act on a running platform (apply, down). Filled in by the apply work.
import type { Command } from "commander";

export function registerPlatformCommands(_cli: Command): void {}
