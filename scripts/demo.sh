#!/usr/bin/env bash
# Builds the web GUI and runs `backwatch demo`: the hub on the embedded SQLite default with
# simulated agents backing up six machines. Open http://127.0.0.1:50051/ to watch.
set -euo pipefail
cd "$(dirname "$0")/.."
(cd clients/web && npm ci --no-audit --no-fund && npm run build)
exec cargo run --release -p backwatch -- demo --database-url "${BACKWATCH_DATABASE_URL:-sqlite://backwatch-demo.db}" "$@"
