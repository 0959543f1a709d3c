# A throwaway Postgres for the tests: a cluster in a temporary folder, on a free loopback
# port, removed on exit. Source this file after ensure.sh, then call start_test_postgres.
# Postgres refuses to run as root, so the cluster belongs to the postgres user.

PG_BIN=/usr/lib/postgresql/15/bin

start_test_postgres() {
  ensure_postgres
  local dir port
  dir=$(mktemp -d "${TMPDIR:-/tmp}/chatsync-pg.XXXXXX")
  chown postgres:postgres "$dir"
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  log "starting a throwaway Postgres on 127.0.0.1:$port"
  su postgres -c "$PG_BIN/initdb -D '$dir/data' -A trust -U postgres" >"$dir/initdb.log" 2>&1
  su postgres -c "$PG_BIN/pg_ctl -D '$dir/data' -l '$dir/server.log' -w \
    -o '-c listen_addresses=127.0.0.1 -p $port -k $dir' start" >/dev/null
  export CHATSYNC_TEST_PG_URL="postgres://postgres@127.0.0.1:$port/postgres"
  # The end-to-end tests stop and start this server to prove the service survives it.
  export CHATSYNC_TEST_PG_DIR="$dir"
  export CHATSYNC_TEST_PG_PORT="$port"
  export CHATSYNC_TEST_PG_BIN="$PG_BIN"
  export CHATSYNC_REQUIRE_PG=1
  trap stop_test_postgres EXIT
}

stop_test_postgres() {
  [ -n "${CHATSYNC_TEST_PG_DIR:-}" ] || return 0
  su postgres -c "$PG_BIN/pg_ctl -D '$CHATSYNC_TEST_PG_DIR/data' -w -m immediate stop" >/dev/null 2>&1 || true
  rm -rf "$CHATSYNC_TEST_PG_DIR"
}
