// The database concern's public surface: the runtime and the CLI import from here.
export { convergeDatabases, connectAdmin, hbaFile, listManagedDatabases, reloadConfig, type AdminConnection, type ConvergeOptions } from "./apply.js";
export { diffSchema, diffServer, type Change, type Step } from "./diff.js";
export { renderHba, type HbaOptions } from "./hba.js";
export { FilePasswordStore, PASSWORD_FILE, type PasswordStore } from "./passwords.js";
export { HBA_FILE, PGDATA, POSTGRES_PORT, databaseUrl, postgresServerSettings } from "./server.js";
export { MANAGED_COMMENT } from "./sql.js";
