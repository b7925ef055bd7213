#!/usr/bin/env bash
# A throwaway PostgreSQL server for the tests, in the manner of ephemeralpg's pg_tmp and Python's
# testing.postgresql: initdb into a temporary directory, listen on a Unix socket there (no TCP
# port, so it never clashes with another server), stop and remove it afterwards.
#
#   scripts/pg-tmp.sh run CMD [ARGS...]   run CMD with HODEI_PG_URL pointing at a throwaway server,
#                                         stopped and removed afterwards, even when CMD fails or
#                                         the run is interrupted; CMD's exit status is ours.
#                                         When HODEI_PG_URL is already set, CMD runs against that
#                                         server and nothing is started.
#   scripts/pg-tmp.sh start DIR           initdb + start a server in the empty or missing DIR;
#                                         prints its connection string (libpq key=value form)
#   scripts/pg-tmp.sh restart DIR         `pg_ctl restart -m immediate` (a crash and recovery)
#   scripts/pg-tmp.sh pause DIR           `pg_ctl stop -m immediate`, keeping the cluster
#   scripts/pg-tmp.sh resume DIR          start the paused cluster again (crash recovery)
#   scripts/pg-tmp.sh stop DIR            stop the server in DIR (immediately) and remove DIR
#   scripts/pg-tmp.sh bindir              print the PostgreSQL bin directory (installing it first)
#
# PostgreSQL comes from the Debian package `postgresql` (installed with apt-get when missing).
# The server refuses to run as root, so when we are root it runs as the `postgres` system user
# (created by the package).
#
# Settings are for tests only: fsync and full_page_writes off (a crash of the machine may lose the
# cluster, which we throw away anyway), max_connections 300 (each test registry has its own pool,
# and cargo runs tests in parallel). synchronous_commit stays on: the fault tests crash the server
# (`restart`) and check that every commit that was acknowledged survived.
set -euo pipefail

say() { echo "pg-tmp: $*" >&2; }
die() { say "$*"; exit 1; }

bindir() {
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [ -z "$dir" ] || [ ! -x "$dir/initdb" ]; then
        say "PostgreSQL is not installed: installing the Debian package 'postgresql' with apt-get"
        local sudo=""
        [ "$(id -u)" = 0 ] || sudo="sudo"
        command -v apt-get >/dev/null 2>&1 \
            || die "no apt-get here: install PostgreSQL (>= 13) yourself, or set HODEI_PG_URL to a server"
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 \
            && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >&2 \
            || die "apt-get install postgresql failed: install PostgreSQL (>= 13) or set HODEI_PG_URL"
        dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
        [ -n "$dir" ] && [ -x "$dir/initdb" ] || die "installed 'postgresql' but found no /usr/lib/postgresql/*/bin/initdb"
    fi
    echo "$dir"
}

# Runs a PostgreSQL program as the cluster's owner: ourselves, or `postgres` when we are root.
as_owner() {
    if [ "$(id -u)" = 0 ]; then
        id postgres >/dev/null 2>&1 || die "running as root and there is no 'postgres' user to own the cluster"
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

url_of() { echo "host=$1 user=postgres dbname=postgres"; }

start() {
    local dir=$1 bin
    bin=$(bindir)
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    # The socket path must fit in sun_path (107 bytes) with "/.s.PGSQL.5432".
    [ "${#dir}" -le 80 ] || die "directory path too long for a Unix socket: $dir"
    [ "$(id -u)" = 0 ] && chown postgres: "$dir"
    chmod 700 "$dir"
    as_owner "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C --no-sync \
        >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
    cat >>"$dir/data/postgresql.conf" <<EOF
listen_addresses = ''
unix_socket_directories = '$dir'
max_connections = 300
fsync = off
full_page_writes = off
shared_buffers = 64MB
EOF
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null \
        || { cat "$dir/server.log" >&2; die "the server did not start"; }
    url_of "$dir"
}

stop() {
    local dir=$1 bin
    bin=$(bindir)
    if [ -f "$dir/data/postmaster.pid" ]; then
        as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
}

restart() {
    local dir=$1 bin
    bin=$(bindir)
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -m immediate -w -t 60 restart >/dev/null \
        || { tail -n 20 "$dir/server.log" >&2; die "restart failed"; }
}

pause() {
    local dir=$1 bin
    bin=$(bindir)
    as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null || die "stop failed"
}

resume() {
    local dir=$1 bin
    bin=$(bindir)
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null \
        || { tail -n 20 "$dir/server.log" >&2; die "start failed"; }
}

run() {
    [ $# -gt 0 ] || die "usage: pg-tmp.sh run CMD [ARGS...]"
    if [ -n "${HODEI_PG_URL:-}" ]; then
        say "using the server in HODEI_PG_URL"
        exec "$@"
    fi
    # Global, not local: the EXIT trap runs after this function has returned.
    RUN_DIR=$(mktemp -d /tmp/hodei-pg.XXXXXX)
    # Stop and remove the server however we leave: success, failure, Ctrl-C, kill.
    trap 'stop "$RUN_DIR"' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    HODEI_PG_URL=$(start "$RUN_DIR")
    export HODEI_PG_URL
    say "throwaway server up: HODEI_PG_URL='$HODEI_PG_URL'"
    local status=0
    "$@" || status=$?
    say "stopping the throwaway server (command exit status $status)"
    return "$status"
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
    run) run "$@" ;;
    start) [ $# = 1 ] || die "usage: pg-tmp.sh start DIR"; start "$1" ;;
    stop) [ $# = 1 ] || die "usage: pg-tmp.sh stop DIR"; stop "$1" ;;
    restart) [ $# = 1 ] || die "usage: pg-tmp.sh restart DIR"; restart "$1" ;;
    pause) [ $# = 1 ] || die "usage: pg-tmp.sh pause DIR"; pause "$1" ;;
    resume) [ $# = 1 ] || die "usage: pg-tmp.sh resume DIR"; resume "$1" ;;
    bindir) bindir ;;
    *) die "usage: pg-tmp.sh run CMD... | start DIR | restart DIR | pause DIR | resume DIR | stop DIR | bindir" ;;
esac
