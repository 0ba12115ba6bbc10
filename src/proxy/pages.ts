// The pages nginx serves itself: when an environment is in maintenance, and when no container
// of an app answers. Visitors read them, so they say what happens in plain words and name
// nothing internal (no container, upstream or platform name).
import type { EnvironmentPlan } from "../plan/types.js";

export function unavailablePage(): string {
  return page(
    "Temporarily unavailable",
    "This site cannot answer right now. It is usually back within a minute; please try again shortly.",
  );
}

/** Names the environment's first domain: the visitor typed it, so it reveals nothing. */
export function maintenancePage(environment: EnvironmentPlan): string {
  const site = environment.domains[0] ?? "This site";
  return page("Down for maintenance", `${site} is being updated and will be back soon. Thank you for your patience.`);
}

function page(title: string, message: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>
<style>body{font-family:system-ui,sans-serif;max-width:36rem;margin:15vh auto;padding:0 1rem;color:#222}h1{font-size:1.5rem}</style>
</head>
<body>
<h1>${escapeHtml(title)}</h1>
<p>${escapeHtml(message)}</p>
</body>
</html>
`;
}

function escapeHtml(text: string): string {
  return text.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;").replaceAll('"', "&quot;");
}
