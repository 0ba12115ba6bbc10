// An app's source at a git ref, fetched into berth's state directory (file:// and https
// URLs alike), shallow: only the commit being deployed is downloaded.
import { execFile } from "node:child_process";
import { mkdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { BerthError } from "../errors.js";

const run = promisify(execFile);

async function git(args: string[], cwd?: string): Promise<string> {
  try {
    const { stdout } = await run("git", args, { cwd, timeout: 300_000, maxBuffer: 16 * 1024 * 1024, env: { ...process.env, GIT_TERMINAL_PROMPT: "0" } });
    return stdout.trim();
  } catch (error) {
    const stderr = String((error as { stderr?: string }).stderr ?? (error as Error).message).trim();
    throw new BerthError("BUILD_FAILED", `git ${args[0]} failed: ${stderr.split("\n").slice(-3).join(" ")}`, "Check the app's source.git URL and the ref.");
  }
}

export interface Checkout {
  dir: string;
  commit: string;
}

/** Fetches `ref` (branch, tag or commit) of `url` into a per-app checkout; returns its commit. */
export async function fetchSource(stateDir: string, app: string, url: string, ref: string): Promise<Checkout> {
  const dir = join(stateDir, "sources", app);
  if (!(await stat(join(dir, ".git")).then(() => true, () => false))) {
    await mkdir(dir, { recursive: true });
    await git(["init", "--quiet", dir]);
  }
  try {
    await git(["fetch", "--quiet", "--depth", "1", url, ref], dir);
  } catch {
    // Servers may refuse a bare commit id in a shallow fetch: fetch everything, then resolve it.
    await git(["fetch", "--quiet", url, "+refs/heads/*:refs/remotes/source/*", "+refs/tags/*:refs/tags/*"], dir);
    await git(["update-ref", "FETCH_HEAD", await git(["rev-parse", "--verify", `${ref}^{commit}`], dir).catch(() => git(["rev-parse", "--verify", `source/${ref}^{commit}`], dir))], dir);
  }
  await git(["checkout", "--quiet", "--force", "--detach", "FETCH_HEAD"], dir);
  await git(["clean", "-fdxq"], dir);
  return { dir, commit: await git(["rev-parse", "HEAD"], dir) };
}
