// Header directive lists. Request headers are set once at http level and response headers once
// per tenant server: no location sets a `proxy_set_header` or `add_header` of its own, so every
// location inherits both lists (nginx drops inherited lines only in a block that sets its own).
// One list per level instead of one per location also keeps nginx's parsed configuration, and so
// the time a reload takes, small.
import type { EnvironmentPlan, SecurityHeaders } from "../plan/types.js";
import { quotedText } from "./syntax.js";

/** Request headers every upstream receives, and what the proxy keeps of its answers (http level). */
export function proxyHeaders(): string[] {
  return [
    // Each server answers with the request's id (securityHeaders): an app that echoes the id it
    // was given would otherwise make the response carry the header twice.
    "proxy_hide_header X-Request-ID;",
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
  ];
}

/**
 * Response headers of an environment's app server. HSTS only for an environment served over
 * TLS: that environment's app is then served on 443 alone, port 80 only redirects. The asset
 * cache header is empty (so not sent) for any URI that is not a static asset, such as the ACME
 * challenges and berth's own pages.
 */
export function securityHeaders(environment: EnvironmentPlan, isServedOverTls: boolean): string[] {
  const { headers } = environment;
  const hsts = isServedOverTls && headers.hsts ? [`add_header Strict-Transport-Security ${quotedText(hstsValue(headers.hsts))} always;`] : [];
  return [
    `add_header X-Frame-Options ${quotedText(headers.frameOptions)} always;`,
    'add_header X-Content-Type-Options "nosniff" always;',
    `add_header Referrer-Policy ${quotedText(headers.referrerPolicy)} always;`,
    `add_header Content-Security-Policy ${quotedText(headers.csp)} always;`,
    ...hsts,
    "add_header X-Request-ID $berth_request_id always;",
    "add_header Cache-Control $berth_asset_cache_control;",
  ];
}

function hstsValue(hsts: Exclude<SecurityHeaders["hsts"], false>): string {
  return [`max-age=${hsts.maxAgeSeconds}`, ...(hsts.includeSubdomains ? ["includeSubDomains"] : []), ...(hsts.preload ? ["preload"] : [])].join("; ");
}
