#!/usr/bin/env bash
# Quick start: builds Gantry, starts three echo backends and the proxy on this directory.
# Ctrl-C stops everything. Try the curl lines from README.md in another terminal.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"
bin="${CARGO_TARGET_DIR:-$root/target}/debug"

# The two programs the quick start runs, named by binary so the line does not depend on which
# package holds the echo backend.
build=(cargo build --bin gantry-proxy --bin gantry-echo)

if [[ ! -x "$bin/gantry-proxy" || ! -x "$bin/gantry-echo" ]]; then
  cat <<'TXT'
First build: cargo compiles Gantry and its ~250 dependencies (debug profile), which takes
several minutes on a small machine (4 minutes measured on 2 shared cores, more when they are
busy or the crates still have to be downloaded). Later runs rebuild only what changed and
serve within seconds. Cargo's progress follows.

TXT
fi
echo "+ ${build[*]}"
"${build[@]}"

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

"$bin/gantry-echo" --listen 127.0.0.1:3001 --name web-v1 & pids+=($!)
"$bin/gantry-echo" --listen 127.0.0.1:3002 --name web-v2 & pids+=($!)
"$bin/gantry-echo" --listen 127.0.0.1:3003 --name api & pids+=($!)

"$bin/gantry-proxy" run --config-dir "$here" --bind-address 127.0.0.1 --admin-addr 127.0.0.1:9901 & pids+=($!)

ready=false
for _ in $(seq 100); do
  if curl -fsS -o /dev/null http://127.0.0.1:9901/readyz 2>/dev/null; then
    ready=true
    break
  fi
  sleep 0.1
done
if [[ "$ready" != true ]]; then
  echo "gantry-proxy is not ready after 10 seconds; see its log above (is port 8080 or 9901 in use?)" >&2
  exit 1
fi
cat <<'TXT'

Gantry is serving http://127.0.0.1:8080 (admin on 127.0.0.1:9901). Try:

  curl -s -H 'Host: www.example.com' http://127.0.0.1:8080/ | grep '"name"'
  curl -s -H 'Host: www.example.com' -H 'x-canary: true' http://127.0.0.1:8080/ | grep '"name"'
  curl -si -H 'Host: api.example.com' http://127.0.0.1:8080/v1/users
  curl -si -H 'Host: api.example.com' http://127.0.0.1:8080/old/users
  curl -s http://127.0.0.1:9901/status

The live dashboard: http://127.0.0.1:9901/ui

Edit examples/quickstart/*.yaml and the change is live within a second. Ctrl-C to stop.
TXT
wait
