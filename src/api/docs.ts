// A readable page of the API, rendered from the contract itself (no scripts, no CDN):
// each operation with its method, path, summary, parameters, body and answers.
type Json = Record<string, unknown>;

const escape = (text: string) => text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function schemaText(schema: unknown): string {
  return escape(JSON.stringify(schema, null, 2));
}

export function docsPage(document: Json): string {
  const info = document.info as Json;
  const sections: string[] = [];
  for (const [path, item] of Object.entries(document.paths as Json)) {
    const pathItem = item as Json;
    for (const method of ["get", "put", "post", "delete", "patch"]) {
      const op = pathItem[method] as Json | undefined;
      if (!op) continue;
      const parameters = [...((pathItem.parameters as Json[] | undefined) ?? []), ...((op.parameters as Json[] | undefined) ?? [])]
        .map((p) => (p.$ref ? String(p.$ref).split("/").pop()! : `${String(p.name)} (${String(p.in)})`))
        .join(", ");
      const body = (op.requestBody as Json | undefined)?.content as Json | undefined;
      const answers = Object.keys(op.responses as Json).join(", ");
      sections.push(`<section id="${escape(String(op.operationId))}">
<h3><code>${method.toUpperCase()} ${escape(path)}</code> — ${escape(String(op.operationId))}</h3>
<p>${escape(String(op.summary ?? ""))}</p>${op.description ? `<p>${escape(String(op.description))}</p>` : ""}
${parameters ? `<p>Parameters: ${escape(parameters)}</p>` : ""}${body ? `<details><summary>Request body (${escape(Object.keys(body).join(", "))})</summary><pre>${schemaText(body)}</pre></details>` : ""}
<p>Answers: ${escape(answers)}</p>
</section>`);
    }
  }
  const schemas = Object.entries(((document.components as Json).schemas as Json))
    .map(([name, schema]) => `<details id="schema-${escape(name)}"><summary>${escape(name)}</summary><pre>${schemaText(schema)}</pre></details>`)
    .join("\n");
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escape(String(info.title))}</title>
<style>body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}code,pre{font:13px ui-monospace,monospace}pre{background:#f4f4f4;padding:.5rem;overflow:auto}section{border-top:1px solid #ddd}</style>
</head><body>
<h1>${escape(String(info.title))} ${escape(String(info.version))}</h1>
<p>${escape(String(info.description ?? ""))}</p>
<p>The contract: <a href="/openapi.json">/openapi.json</a> (OpenAPI ${escape(String(document.openapi))}).</p>
<h2>Operations</h2>
${sections.join("\n")}
<h2>Schemas</h2>
${schemas}
</body></html>
`;
}
