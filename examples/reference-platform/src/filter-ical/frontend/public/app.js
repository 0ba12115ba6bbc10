// filter-ical's single-page app: lists the calendar filters kept by the backend and
// creates new ones. Plain DOM, no build step; text goes in with textContent only.

const form = document.getElementById("new-filter");
const formError = document.getElementById("form-error");
const list = document.getElementById("filters");
const status = document.getElementById("status");
const version = document.getElementById("version");

/** The backend's own sentence for a failed request, or the HTTP status. */
async function failure(res) {
  try {
    const body = await res.json();
    if (body && typeof body.message === "string") return body.message;
  } catch {
    // Not JSON (a proxy error page, say): fall through to the status.
  }
  return `the server answered ${res.status} ${res.statusText}`.trim();
}

function filterItem(filter) {
  const item = document.createElement("li");

  const name = document.createElement("strong");
  name.textContent = filter.name;

  const pattern = document.createElement("code");
  pattern.textContent = `/${filter.pattern}/`;

  const feed = new URL(filter.ical_url, window.location.origin).href;
  const link = document.createElement("a");
  link.href = feed;
  link.textContent = "Subscribe (.ics)";
  link.title = feed;

  item.append(name, " ", pattern, " ", link);
  return item;
}

async function loadFilters() {
  try {
    const res = await fetch("/api/filters", { headers: { Accept: "application/json" } });
    if (!res.ok) throw new Error(await failure(res));
    const { filters } = await res.json();
    list.replaceChildren(...filters.map(filterItem));
    status.textContent = filters.length === 0
      ? "No filters yet: create the first one above."
      : `${filters.length} filter${filters.length === 1 ? "" : "s"}`;
  } catch (err) {
    status.textContent = `Could not load the filters: ${err.message}`;
  }
}

async function createFilter(event) {
  event.preventDefault();
  const button = form.querySelector("button");
  const data = new FormData(form);
  formError.hidden = true;
  button.disabled = true;
  try {
    const res = await fetch("/api/filters", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ name: data.get("name"), pattern: data.get("pattern") }),
    });
    if (res.status !== 201) throw new Error(await failure(res));
    form.reset();
    await loadFilters();
  } catch (err) {
    formError.textContent = err.message;
    formError.hidden = false;
  } finally {
    button.disabled = false;
  }
}

async function showVersion() {
  try {
    const res = await fetch("/api/version", { headers: { Accept: "application/json" } });
    if (!res.ok) return;
    const info = await res.json();
    version.textContent = `backend ${info.version}, schema ${info.schema_version ?? "not migrated"}`;
  } catch {
    // The footer is a nicety; the page works without it.
  }
}

form.addEventListener("submit", (event) => void createFilter(event));
void loadFilters();
void showVersion();
