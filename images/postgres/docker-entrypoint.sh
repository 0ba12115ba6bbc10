#!/usr/bin/env bash
# berth-postgres entrypoint. Follows the official postgres image's contract:
#
#   POSTGRES_PASSWORD          superuser password; required unless
#                              POSTGRES_HOST_AUTH_METHOD=trust
#   POSTGRES_USER              superuser name (default postgres)
#   POSTGRES_DB                database created at first init (default = POSTGRES_USER)
#   POSTGRES_INITDB_ARGS       extra initdb arguments, e.g. "--locale=en_US.UTF-8"
#   POSTGRES_INITDB_WALDIR     initdb --waldir
#   POSTGRES_HOST_AUTH_METHOD  method of the network line in pg_hba.conf
#                              (default: password_encryption = scram-sha-256)
#   PGDATA                     data directory (default /var/lib/postgresql/data)
#   *_FILE                     POSTGRES_PASSWORD_FILE etc. read the value from a file
#
# At first start (no $PGDATA/PG_VERSION) it runs initdb, writes pg_hba.conf,
# creates POSTGRES_DB and runs /docker-entrypoint-initdb.d/*.sh, *.sql,
# *.sql.gz once, on a temporary server that listens on the unix socket only.
# With no init files, POSTGRES_DB is created in single-user mode instead (no
# temporary server to start and stop). initdb does not fsync file by file; the
# data directory's file system is synced once, before the server starts.
# Later starts leave PGDATA alone: pg_hba.conf and postgresql.conf are never
# rewritten, so they can be replaced (then `SELECT pg_reload_conf()`).
#
# Started as root (the default), it fixes the ownership of PGDATA and the
# socket directory and re-executes itself as postgres (uid 999) with setpriv.
# The server then runs as PID 1 (SIGINT = fast shutdown, the STOPSIGNAL).
set -Eeo pipefail

# file_env VAR [DEFAULT]: VAR's value, or the contents of the file named by VAR_FILE.
file_env() {
  local var="$1" file_var="${1}_FILE" def="${2:-}" val
  if [ -n "${!var:-}" ] && [ -n "${!file_var:-}" ]; then
    echo >&2 "error: both $var and $file_var are set (but are exclusive)"
    exit 1
  fi
  val="$def"
  if [ -n "${!var:-}" ]; then
    val="${!var}"
  elif [ -n "${!file_var:-}" ]; then
    val="$(<"${!file_var}")"
  fi
  export "$var"="$val"
  unset "$file_var"
}

want_help() {
  local arg
  for arg; do
    case "$arg" in
      -'?'|--help|--describe-config|-V|--version) return 0 ;;
    esac
  done
  return 1
}

setup_env() {
  : "${PGDATA:=/var/lib/postgresql/data}"
  export PGDATA
  file_env POSTGRES_PASSWORD
  file_env POSTGRES_USER postgres
  file_env POSTGRES_DB "$POSTGRES_USER"
  file_env POSTGRES_INITDB_ARGS
  : "${POSTGRES_HOST_AUTH_METHOD:=}"
  DATABASE_ALREADY_EXISTS=
  if [ -s "$PGDATA/PG_VERSION" ]; then
    DATABASE_ALREADY_EXISTS=true
  fi
}

create_directories() {
  local uid
  uid="$(id -u)"
  mkdir -p "$PGDATA"
  chmod 00700 "$PGDATA" 2>/dev/null || :
  mkdir -p /var/run/postgresql
  chmod 03775 /var/run/postgresql 2>/dev/null || :
  if [ -n "${POSTGRES_INITDB_WALDIR:-}" ]; then
    mkdir -p "$POSTGRES_INITDB_WALDIR"
    [ "$uid" = 0 ] && find "$POSTGRES_INITDB_WALDIR" \! -user postgres -exec chown postgres:postgres '{}' +
    chmod 700 "$POSTGRES_INITDB_WALDIR"
  fi
  if [ "$uid" = 0 ]; then
    find "$PGDATA" \! -user postgres -exec chown postgres:postgres '{}' +
    find /var/run/postgresql \! -user postgres -exec chown postgres:postgres '{}' +
  fi
}

verify_minimum_env() {
  if [ -z "$POSTGRES_PASSWORD" ] && [ "$POSTGRES_HOST_AUTH_METHOD" != trust ]; then
    cat >&2 <<'EOF'
Error: Database is uninitialized and superuser password is not specified.
       You must specify POSTGRES_PASSWORD to a non-empty value for the
       superuser. For example, "-e POSTGRES_PASSWORD=password" on "docker run".

       You may also use "POSTGRES_HOST_AUTH_METHOD=trust" to allow all
       connections without a password. This is *not* recommended.
EOF
    exit 1
  fi
  if [ "$POSTGRES_HOST_AUTH_METHOD" = trust ]; then
    echo >&2 'WARNING: POSTGRES_HOST_AUTH_METHOD=trust: every connection is accepted without a password.'
  fi
}

init_database_dir() {
  if [ -n "${POSTGRES_INITDB_WALDIR:-}" ]; then
    set -- --waldir "$POSTGRES_INITDB_WALDIR" "$@"
  fi
  # eval: POSTGRES_INITDB_ARGS may contain quoted arguments. The password goes
  # through a pipe, never through the command line.
  if [ -n "$POSTGRES_PASSWORD" ]; then
    eval 'initdb --no-sync --username="$POSTGRES_USER" --pwfile=<(printf "%s\n" "$POSTGRES_PASSWORD") '"$POSTGRES_INITDB_ARGS"' "$@"'
  else
    eval 'initdb --no-sync --username="$POSTGRES_USER" '"$POSTGRES_INITDB_ARGS"' "$@"'
  fi
}

# What initdb and the init steps wrote reaches the disk before the server starts:
# one sync of each file system instead of an fsync per file.
sync_database_dir() {
  sync -f "$PGDATA"
  if [ -n "${POSTGRES_INITDB_WALDIR:-}" ]; then sync -f "$POSTGRES_INITDB_WALDIR"; fi
}

# POSTGRES_DB without a server: single-user mode reads the command from stdin.
# It exits 0 even when the command fails, so its output is checked.
setup_db_single_user() {
  local output
  if [ "$POSTGRES_DB" = postgres ]; then return; fi
  if ! output="$(printf 'CREATE DATABASE "%s"\n' "${POSTGRES_DB//\"/\"\"}" | postgres --single -D "$PGDATA" postgres 2>&1)" || grep -q 'ERROR:' <<<"$output"; then
    printf '%s\n' "$output" >&2
    exit 1
  fi
}

# pg_hba.conf: initdb's local lines (trust over the unix socket and loopback
# inside the container) plus one line for the network.
setup_hba_conf() {
  local auth
  if [ "$1" = postgres ]; then shift; fi
  auth="$(postgres -C password_encryption "$@")"
  : "${POSTGRES_HOST_AUTH_METHOD:=$auth}"
  {
    printf '\n# berth-postgres entrypoint: connections from the network\n'
    printf 'host all all all %s\n' "$POSTGRES_HOST_AUTH_METHOD"
  } >>"$PGDATA/pg_hba.conf"
}

temp_server_start() {
  if [ "$1" = postgres ]; then shift; fi
  set -- "$@" -c listen_addresses='' -p "${PGPORT:-5432}"
  PGUSER="${PGUSER:-$POSTGRES_USER}" pg_ctl -D "$PGDATA" -o "$(printf '%q ' "$@")" -w start
}

temp_server_stop() {
  PGUSER="${PGUSER:-postgres}" pg_ctl -D "$PGDATA" -m fast -w stop
}

# process_sql [psql args]: psql over the unix socket as POSTGRES_USER.
process_sql() {
  local runner=(psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc)
  if [ -n "$POSTGRES_DB" ]; then
    runner+=(--dbname "$POSTGRES_DB")
  fi
  PGHOST='' PGHOSTADDR='' "${runner[@]}" "$@"
}

setup_db() {
  local exists
  # shellcheck disable=SC2097,SC2098 # the db variable takes the outer POSTGRES_DB
  exists="$(POSTGRES_DB='' process_sql --dbname postgres --set db="$POSTGRES_DB" --tuples-only <<-'EOSQL'
		SELECT 1 FROM pg_database WHERE datname = :'db' ;
	EOSQL
  )"
  if [ -z "$exists" ]; then
    # shellcheck disable=SC2097,SC2098
    POSTGRES_DB='' process_sql --dbname postgres --set db="$POSTGRES_DB" <<-'EOSQL'
			CREATE DATABASE :"db" ;
		EOSQL
    echo
  fi
}

process_init_files() {
  local f
  echo
  for f; do
    case "$f" in
      *.sh)
        if [ -x "$f" ]; then
          echo "$0: running $f"
          "$f"
        else
          echo "$0: sourcing $f"
          # shellcheck disable=SC1090
          . "$f"
        fi
        ;;
      *.sql) echo "$0: running $f"; process_sql -f "$f"; echo ;;
      *.sql.gz) echo "$0: running $f"; gunzip -c "$f" | process_sql; echo ;;
      *) echo "$0: ignoring $f" ;;
    esac
  done
}

main() {
  # `docker run IMAGE -c max_connections=50` means postgres with those options.
  if [ "${1:0:1}" = '-' ]; then
    set -- postgres "$@"
  fi

  if [ "$1" = postgres ] && ! want_help "$@"; then
    setup_env
    create_directories
    if [ "$(id -u)" = 0 ]; then
      # Re-run this script as postgres.
      exec setpriv --reuid=postgres --regid=postgres --init-groups \
        env HOME=/var/lib/postgresql "${BASH_SOURCE[0]}" "$@"
    fi

    if [ -z "$DATABASE_ALREADY_EXISTS" ]; then
      verify_minimum_env
      # Fail early when the init directory is unreadable.
      ls /docker-entrypoint-initdb.d/ >/dev/null
      init_database_dir
      setup_hba_conf "$@"
      if compgen -G '/docker-entrypoint-initdb.d/*' >/dev/null; then
        export PGPASSWORD="${PGPASSWORD:-$POSTGRES_PASSWORD}"
        temp_server_start "$@"
        setup_db
        process_init_files /docker-entrypoint-initdb.d/*
        temp_server_stop
        unset PGPASSWORD
      else
        setup_db_single_user
      fi
      sync_database_dir
      echo
      echo 'PostgreSQL init process complete; ready for start up.'
      echo
    else
      echo
      echo 'PostgreSQL Database directory appears to contain a database; Skipping initialization'
      echo
    fi
  fi

  exec "$@"
}

main "$@"
