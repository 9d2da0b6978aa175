# Sourced by .ci/run: starts a throwaway PostgreSQL cluster for the tests and
# exports LDP_TEST_POSTGRES_URL (plus LDP_REQUIRE_POSTGRES=1, so the PostgreSQL
# store tests fail instead of skipping if it is missing). The cluster lives in a
# temporary folder, listens on 127.0.0.1 only (trust auth) with its unix socket
# in that folder, and is stopped and deleted when the calling shell exits.
#
# Run alone: `bash -c 'source .ci/postgres.sh && start_test_postgres && cargo test ...'`.

# The bin folder of an installed PostgreSQL (initdb on PATH, else the newest
# /usr/lib/postgresql/*/bin), or nothing.
pg_bin_dir() {
    if command -v initdb >/dev/null 2>&1; then
        dirname "$(readlink -f "$(command -v initdb)")"
        return
    fi
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    if [ -n "$dir" ] && [ -x "$dir/initdb" ]; then
        echo "$dir"
    fi
}

# Runs a command as the postgres user when we are root (initdb refuses root),
# from / so that a working directory the postgres user cannot read does not
# matter.
as_pg_user() {
    if [ "$(id -u)" = 0 ]; then
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

stop_test_postgres() {
    if [ -n "${LDP_CI_PG_DIR:-}" ] && [ -d "$LDP_CI_PG_DIR/data" ]; then
        as_pg_user "$LDP_CI_PG_BIN/pg_ctl" -D "$LDP_CI_PG_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
    fi
    if [ -n "${LDP_CI_PG_DIR:-}" ]; then
        rm -rf "$LDP_CI_PG_DIR"
    fi
}

start_test_postgres() {
    LDP_CI_PG_BIN=$(pg_bin_dir)
    if [ -z "$LDP_CI_PG_BIN" ] && [ "$(id -u)" != 0 ]; then
        echo "PostgreSQL is not installed (no initdb on PATH or in /usr/lib/postgresql/*/bin)" \
            "and installing it needs root: run 'apt-get install postgresql' as root, or put" \
            "its bin folder on PATH" >&2
        return 1
    fi
    if [ -z "$LDP_CI_PG_BIN" ]; then
        echo "installing PostgreSQL (initdb not found)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
        LDP_CI_PG_BIN=$(pg_bin_dir)
    fi
    if [ -z "$LDP_CI_PG_BIN" ]; then
        echo "PostgreSQL is not installed and could not be installed" >&2
        return 1
    fi
    LDP_CI_PG_DIR=$(mktemp -d /tmp/ldp-ci-postgres.XXXXXX)
    trap stop_test_postgres EXIT
    if [ "$(id -u)" = 0 ]; then
        chown postgres: "$LDP_CI_PG_DIR"
    fi
    as_pg_user "$LDP_CI_PG_BIN/initdb" -D "$LDP_CI_PG_DIR/data" -U postgres \
        --auth=trust --encoding=UTF8 --no-locale >"$LDP_CI_PG_DIR/initdb.log"
    # The first free port from 54329 (a connection that succeeds means taken).
    local port=54329
    while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
        port=$((port + 1))
    done
    as_pg_user "$LDP_CI_PG_BIN/pg_ctl" -D "$LDP_CI_PG_DIR/data" -l "$LDP_CI_PG_DIR/server.log" -w \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $LDP_CI_PG_DIR" start >/dev/null
    as_pg_user "$LDP_CI_PG_BIN/createdb" -h 127.0.0.1 -p "$port" -U postgres ldp_test
    export LDP_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$port/ldp_test"
    export LDP_REQUIRE_POSTGRES=1
    echo "PostgreSQL $("$LDP_CI_PG_BIN/postgres" --version | awk '{print $3}') for the tests at $LDP_TEST_POSTGRES_URL"
}
