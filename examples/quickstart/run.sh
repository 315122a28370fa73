#!/usr/bin/env bash
# Quick start: builds Gantry, starts three echo backends and the proxy on this directory.
# Ctrl-C stops everything. Try the curl lines from README.md in another terminal.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

cargo build --quiet -p gantry-proxy -p gantry-testkit --bin gantry-proxy --bin gantry-echo
bin="$root/target/debug"

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

"$bin/gantry-echo" --listen 127.0.0.1:3001 --name web-v1 & pids+=($!)
"$bin/gantry-echo" --listen 127.0.0.1:3002 --name web-v2 & pids+=($!)
"$bin/gantry-echo" --listen 127.0.0.1:3003 --name api & pids+=($!)

"$bin/gantry-proxy" run --config-dir "$here" --bind-address 127.0.0.1 --admin-addr 127.0.0.1:9901 & pids+=($!)

for _ in $(seq 100); do
  curl -fsS -o /dev/null http://127.0.0.1:9901/readyz 2>/dev/null && break
  sleep 0.1
done
cat <<'TXT'

Gantry is serving http://127.0.0.1:8080 (admin on 127.0.0.1:9901). Try:

  curl -s -H 'Host: www.example.com' http://127.0.0.1:8080/ | grep '"name"'
  curl -s -H 'Host: www.example.com' -H 'x-canary: true' http://127.0.0.1:8080/ | grep '"name"'
  curl -si -H 'Host: api.example.com' http://127.0.0.1:8080/v1/users
  curl -si -H 'Host: api.example.com' http://127.0.0.1:8080/old/users
  curl -s http://127.0.0.1:9901/status

Edit examples/quickstart/*.yaml and the change is live within a second. Ctrl-C to stop.
TXT
wait
