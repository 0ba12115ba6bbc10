// Directive lists included in many locations. nginx drops a server's `proxy_set_header` and
// `add_header` lines in any location that sets one of its own, so each location that proxies or
// adds a header includes these files itself instead of relying on inheritance.
import type { EnvironmentPlan, SecurityHeaders } from "../plan/types.js";
import { quotedText, renderConfig } from "./syntax.js";

/** Request headers every upstream receives. */
export function renderProxyHeaders(): string {
  return renderConfig([
    "# Request headers for every upstream. Rendered by berth; do not edit.",
    "proxy_set_header Host $host;",
    "proxy_set_header X-Real-IP $remote_addr;",
    // The proxy is the edge: a chain sent by the client would let anyone claim any address.
    "proxy_set_header X-Forwarded-For $remote_addr;",
    "proxy_set_header X-Forwarded-Proto $scheme;",
    "proxy_set_header X-Forwarded-Host $host;",
    "proxy_set_header X-Forwarded-Port $berth_forwarded_port;",
    "proxy_set_header X-Request-ID $berth_request_id;",
    "proxy_set_header Upgrade $http_upgrade;",
    "proxy_set_header Connection $berth_connection_upgrade;",
  ]);
}

/**
 * Response headers of one environment. HSTS is only in the file of an environment served over
 * TLS: that environment's app is then served on 443 alone, port 80 only redirects.
 */
export function renderSecurityHeaders(environment: EnvironmentPlan, isServedOverTls: boolean): string {
  const { headers } = environment;
  const hsts = isServedOverTls && headers.hsts ? [`add_header Strict-Transport-Security ${quotedText(hstsValue(headers.hsts))} always;`] : [];
  return renderConfig([
    `# Response headers of ${environment.app}/${environment.env}. Rendered by berth; do not edit.`,
    `add_header X-Frame-Options ${quotedText(headers.frameOptions)} always;`,
    'add_header X-Content-Type-Options "nosniff" always;',
    `add_header Referrer-Policy ${quotedText(headers.referrerPolicy)} always;`,
    `add_header Content-Security-Policy ${quotedText(headers.csp)} always;`,
    ...hsts,
    "add_header X-Request-ID $berth_request_id always;",
  ]);
}

function hstsValue(hsts: Exclude<SecurityHeaders["hsts"], false>): string {
  return [`max-age=${hsts.maxAgeSeconds}`, ...(hsts.includeSubdomains ? ["includeSubDomains"] : []), ...(hsts.preload ? ["preload"] : [])].join("; ");
}
