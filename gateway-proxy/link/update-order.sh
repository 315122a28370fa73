#!/usr/bin/env bash
# Regenerates gateway-proxy/link/order.txt, the functions gantry-proxy runs, which a release
# build places together (see gateway-proxy/build.rs and docs/benchmarks.md, "Code pages").
#
#   gateway-proxy/link/update-order.sh [BINDIR]
#
# BINDIR holds a release `gantry-proxy` and `gantry-echo` (default: target/release). Build the
# proxy on its own, as its image and e2e/bench/run.sh do (built with other packages, features
# unify differently and every symbol's hash changes), with the toolchain of its image
# (gateway-proxy/Dockerfile):
#   cargo build --release --locked -p gantry-proxy --bins
#   cargo build --release --locked -p gantry-testkit --bins
# Needs valgrind, curl, h2load (nghttp2-client), openssl and nm. KEEP=1 keeps the callgrind
# output and the configuration in the temporary directory.
#
# The proxy runs under callgrind: it starts in standalone mode with an HTTP and an HTTPS
# listener, serves HTTP/1.1, h2c and HTTP/2 over TLS, answers a 404 and the admin endpoints.
# Every function of the binary it ran is listed, one symbol a line: those run while serving
# first (the most instructions first), then those run only at start-up. A Rust symbol's hash
# depends on the compiler's version and on its crate's version, features, dependencies and
# build profile, not on the source, so the list holds across ordinary changes. Regenerate it
# after a toolchain or dependency upgrade (e2e/bench/run.sh says how much of it a build found),
# or when the request path changes shape: a name the build no longer has is skipped, and its
# code is placed as if unlisted.
set -euo pipefail

cd "$(dirname "$0")/../.."
BIN=${1:-target/release}
OUT=gateway-proxy/link/order.txt
for tool in valgrind callgrind_control curl h2load openssl nm; do
  command -v "$tool" >/dev/null || { echo "update-order.sh: $tool is needed" >&2; exit 1; }
done
WORK=$(mktemp -d)
cleanup() {
  [[ -n ${VP:-} ]] && kill -9 "$VP" 2>/dev/null || true
  [[ -n ${EP:-} ]] && kill "$EP" 2>/dev/null || true
  if [[ -n ${KEEP:-} ]]; then echo "update-order.sh: kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

HTTP=19780 HTTPS=19781 ADMIN=19782 BACKEND=19783
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -keyout "$WORK/key.pem" -out "$WORK/cert.pem" -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost 2>/dev/null
mkdir "$WORK/config"
cat > "$WORK/config/gateway.yaml" <<YAML
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: gantry}
spec: {controllerName: gantry.dev/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: order, namespace: default}
spec:
  gatewayClassName: gantry
  listeners:
    - {name: http, port: $HTTP, protocol: HTTP}
    - name: https
      port: $HTTPS
      protocol: HTTPS
      tls: {certificateRefs: [{name: cert}]}
---
apiVersion: v1
kind: Secret
metadata: {name: cert, namespace: default}
type: kubernetes.io/tls
data:
  tls.crt: $(base64 -w0 "$WORK/cert.pem")
  tls.key: $(base64 -w0 "$WORK/key.pem")
---
apiVersion: v1
kind: Service
metadata: {name: backend, namespace: default}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: backend-0, namespace: default, labels: {kubernetes.io/service-name: backend}}
addressType: IPv4
ports: [{name: http, port: $BACKEND}]
endpoints: [{addresses: ["127.0.0.1"], conditions: {ready: true}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: route, namespace: default}
spec:
  parentRefs: [{name: order}]
  hostnames: [localhost]
  rules:
    - matches: [{path: {type: PathPrefix, value: /svc}}]
      backendRefs: [{name: backend, port: 80}]
YAML

"$BIN/gantry-echo" --listen "127.0.0.1:$BACKEND" --plain >/dev/null 2>&1 &
EP=$!
valgrind --tool=callgrind --demangle=no --callgrind-out-file="$WORK/cg.out" \
  "$BIN/gantry-proxy" run --config-dir "$WORK/config" --admin-addr "127.0.0.1:$ADMIN" \
  --log-level warn > "$WORK/proxy.log" 2>&1 &
VP=$!
ready=
for _ in $(seq 1 600); do
  if curl -sf -o /dev/null "http://localhost:$HTTP/svc" 2>/dev/null; then ready=1; break; fi
  sleep 0.2
done
[[ -n $ready ]] || { cat "$WORK/proxy.log" >&2; echo "update-order.sh: the proxy did not serve" >&2; exit 1; }
# Part 1: start-up. Part 2: serving.
callgrind_control --dump "$VP" >/dev/null
curl -sf -o /dev/null "http://localhost:$HTTP/svc/[1-200]"
curl -sfk -o /dev/null --http1.1 "https://localhost:$HTTPS/svc/[1-100]"
h2load -n 100 -c 1 "http://localhost:$HTTP/svc" >/dev/null
h2load -n 100 -c 1 "https://localhost:$HTTPS/svc" >/dev/null
curl -s -o /dev/null "http://localhost:$HTTP/nothing/[1-20]"
curl -sf -o /dev/null "http://127.0.0.1:$ADMIN/metrics"
curl -sf -o /dev/null "http://127.0.0.1:$ADMIN/readyz"
callgrind_control --dump "$VP" >/dev/null
kill -9 "$VP"; wait "$VP" 2>/dev/null || true; VP=

# Self cost per function of one callgrind dump: "cost name" lines. A cost line starts with its
# position (a line number, `+N` or `-N` relative to the last, or `*` for the same); one after
# `calls=` is the call's inclusive cost, not the caller's own.
self_costs() {
  awk '
    # A name is given once, where its id first appears (`fn=` or `cfn=`), and by id after.
    /^c?fn=/ {
      id = $1; sub(/^c?fn=/, "", id)
      if (NF > 1) { name[id] = $2 }
      if ($0 ~ /^fn=/) { cur = name[id]; skip = 0 }
      next
    }
    /^calls=/ { skip = 1; next }
    /^[0-9+*-]/ {
      if (skip) { skip = 0; next }
      if (cur != "") cost[cur] += $NF
      next
    }
    END { for (f in cost) print cost[f], f }
  ' "$1"
}
startup="$WORK/cg.out.1" serving="$WORK/cg.out.2"
{
  echo "# Generated by gateway-proxy/link/update-order.sh; do not edit."
  {
    self_costs "$serving" | sort -k1,1nr | awk '{print $2}'
    self_costs "$startup" | sort -k1,1nr | awk '{print $2}'
  } | awk '!seen[$0]++' | grep -Fxf <(nm --defined-only "$BIN/gantry-proxy" | awk '$2 ~ /^[tTwW]$/ {print $3}')
} > "$OUT"
echo "update-order.sh: $(($(wc -l < "$OUT") - 1)) functions in $OUT"
