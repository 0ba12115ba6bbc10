// Everything the CLI needs that talks to Docker, PostgreSQL or SQLite, loaded only by the
// commands that use it: `berth validate` and `berth plan` start without these modules
// (loading dockerode and pg alone costs most of a second).
export { connectDocker, inspectContainer } from "../host/docker.js";
export { applyPlatform } from "../runtime/apply.js";
export { downPlatform } from "../runtime/down.js";
export { watchPlatform } from "../runtime/watch.js";
export { containerPostgres } from "../runtime/postgres.js";
export { deploy, environmentOf, recoverDeploys, rollback, withReleases } from "../deploy/deploy.js";
export { Store } from "../state/store.js";
export { SecretStore } from "../secrets/store.js";
export { secretsKeyPath } from "../secrets/keys.js";
