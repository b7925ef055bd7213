#!/usr/bin/env bash
# The body of `make bench-pg`, run by `scripts/pg-tmp.sh run` inside a throwaway server
# (HODEI_PG_URL = "host=DIR user=postgres dbname=postgres"): makes the server durable and sized
# for a 1M-worker fleet, then runs the bench (pg/examples/bench_pg.rs) with the arguments given.
#
# The throwaway server of the tests runs with fsync and full_page_writes off; a benchmark of
# "synchronous commit" must not, so both go back on here (the production defaults), and
# shared_buffers grows to 1 GB so that the 1M-worker tables (~0.5 GB with their indexes) stay in
# PostgreSQL's cache as they would on a server sized for such a fleet. The raw floor of every
# row runs on this same server.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=$("$here/pg-tmp.sh" bindir)
dir=$(echo "$HODEI_PG_URL" | sed -n 's/.*host=\([^ ]*\).*/\1/p')
[ -n "$dir" ] && [ -d "$dir/data" ] || { echo "bench-pg: not a pg-tmp.sh server: $HODEI_PG_URL" >&2; exit 1; }
as_owner() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
as_owner "$bin/psql" -X -q -h "$dir" -U postgres -d postgres -c "ALTER SYSTEM SET fsync = on" \
    -c "ALTER SYSTEM SET full_page_writes = on" -c "ALTER SYSTEM SET shared_buffers = '1GB'" \
    -c "ALTER SYSTEM SET max_wal_size = '1GB'"
"$here/pg-tmp.sh" restart "$dir"
# The restart above was `-m immediate`: make everything written so far durable before measuring.
as_owner "$bin/psql" -X -q -h "$dir" -U postgres -d postgres -c "CHECKPOINT"
exec "$@"
