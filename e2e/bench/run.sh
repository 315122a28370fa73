#!/usr/bin/env bash
# Gantry's benchmark suite: installs wrk, h2load, nginx, haproxy (and valgrind for a full run) when
# missing, builds the release binaries, and runs Gantry side by side with nginx and haproxy,
# then Gantry in Kubernetes mode against an in-process API server (watch event to first 200 at
# 1,000 and 5,000 routes; 100 routes with --quick).
#
#   e2e/bench/run.sh                  full run (about 30 minutes on 2 cores); writes docs/benchmarks/
#   e2e/bench/run.sh --quick          short run of release builds (about a minute once built)
#   e2e/bench/run.sh --quick --debug  CI smoke test: debug builds (the test build's, mostly), a
#                                     tiny matrix, every proxy and the Kubernetes-mode
#                                     propagation once; figures printed, none asserted
#   e2e/bench/run.sh --help           every knob
set -euo pipefail

debug=""
quick=""
args=()
for arg in "$@"; do
  case "$arg" in
    --debug) debug=1 ;;
    --quick) quick=1 ;;
    *) args+=("$arg") ;;
  esac
done
[ -z "$quick" ] || [ -n "$debug" ] || args=(--quick ${args[@]+"${args[@]}"})

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
command -v curl >/dev/null 2>&1 || missing+=(curl)
# HTTP/2 load (h2c and TLS) for every proxy.
command -v h2load >/dev/null 2>&1 || missing+=(nghttp2-client)
# The global rate limit of the policy scenarios counts in Redis.
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
# Instructions per request are counted by callgrind: in a full run, or when asked for.
if [ -z "$quick" ] || [[ " ${args[*]-} " == *" --instructions"* ]]; then
  command -v valgrind >/dev/null 2>&1 || missing+=(valgrind)
fi
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing ${missing[*]} (apt-get)" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  # The suite runs nginx and haproxy itself with its own configuration files; keep the
  # packages from starting their system services while they install.
  policy=/usr/sbin/policy-rc.d
  added_policy=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
    $sudo chmod +x "$policy"
    added_policy=1
  fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  [ -z "$added_policy" ] || $sudo rm -f "$policy"
fi

target="${CARGO_TARGET_DIR:-$root/target}"
if [ -n "$debug" ]; then
  # Debug binaries with the feature set of `cargo test --workspace`, so after the test suite
  # only the benchmark and the echo binary are new (seconds), and the smallest matrix that
  # still runs every part once.
  cargo build --quiet --locked --workspace --all-targets
  exec "$target/debug/gantry-bench" --quick --bins "$target/debug" \
    --routes 1,10 --connections 1 --duration 1 --warmup 0 --repeats 1 \
    --propagation-at 10 --propagation-samples 1 --churn-seconds 0 \
    --kube-propagation-at 10 --kube-propagation-samples 1 --idle-connections 50 \
    ${args[@]+"${args[@]}"}
fi
# The proxy is built on its own, as its image and `gateway-proxy/link/update-order.sh` build
# it: built with other packages, features would unify differently and change its symbols'
# hashes, and its link order (gateway-proxy/build.rs) would no longer find them.
cargo build --release --quiet --locked -p gantry-proxy --bins
cargo build --release --quiet --locked -p gantry-testkit -p gantry-bench --bins
# How much of the link order this build found: it lists the functions the proxy runs, so
# that they share a few MiB of code pages (docs/benchmarks.md, "Code pages").
order="$root/gateway-proxy/link/order.txt"
if [ -f "$order" ] && command -v nm >/dev/null 2>&1; then
  listed=$(grep -vc '^#' "$order")
  found=$(grep -v '^#' "$order" \
    | grep -Fxc -f <(nm --defined-only "$target/release/gantry-proxy" | awk '{print $3}') || true)
  echo "link order: $found of $listed functions found in this build"
  if [ $((found * 10)) -lt $((listed * 9)) ]; then
    echo "link order: stale (other toolchain or dependencies); regenerate it with" \
      "gateway-proxy/link/update-order.sh, or the proxy's memory figures will be higher" >&2
  fi
fi
# The binaries just built are the ones measured (without --bins the suite would build them
# again itself, with the whole workspace's features).
[[ " ${args[*]-} " == *" --bins"* ]] || args=(--bins "$target/release" ${args[@]+"${args[@]}"})
exec "$target/release/gantry-bench" ${args[@]+"${args[@]}"}
