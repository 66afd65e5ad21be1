#!/usr/bin/env bash
# Stops the PostgreSQL cluster the Rust tests share (backend/testkit starts it on demand) and,
# with --remove, deletes it.
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
if [ "${1:-}" = --remove ]; then rm -rf "$dir"; fi
