#!/usr/bin/env bash
# Stops the PostgreSQL cluster and the MariaDB server the Rust tests share (backend/testkit starts
# them on demand) and, with --remove, deletes them.
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=${ORRERY_TEST_PG_DIR:-target/testkit}
pidfile=$dir/pgdata/postmaster.pid
if [ -f "$pidfile" ]; then
  pid=$(head -n1 "$pidfile")
  if kill -INT "$pid" 2>/dev/null; then
    for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -QUIT "$pid" 2>/dev/null || true
  fi
fi
# The MariaDB server of the MySQL tests, if one was started.
mdir=${ORRERY_TEST_MARIADB_DIR:-target/testkit-mariadb}
if [ -f "$mdir/mariadbd.pid" ]; then
  pid=$(cat "$mdir/mariadbd.pid")
  if kill -TERM "$pid" 2>/dev/null; then
    for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  fi
fi
if [ "${1:-}" = --remove ]; then rm -rf "$dir" "$mdir"; fi
