#!/usr/bin/env bash
# Deploy (or update) MicroFlack on the Kubernetes cluster kubectl points at,
# in the namespace "microflack". Running it again applies the manifests
# again; the secrets are created by the first run and then kept.
#
#   deploy.sh [--wait]
#
# 1. the namespace (manifests/00-namespace.yaml);
# 2. the Secrets, only those that do not exist yet: microflack-app
#    (SECRET_KEY, JWT_SECRET_KEY) and microflack-db (the MariaDB root and
#    per-service passwords, and the services' DATABASE_URLs). The random
#    values go to kubectl on its standard input, never on a command line
#    or into a file, and `kubectl create` refuses to replace a Secret that
#    appeared meanwhile. No Secret is kept in the repository;
# 3. every manifest, with the image versions filled in: the image of a
#    service is microflack_<service>:<version of microflack_<service>/VERSION>;
# 4. with --wait: waits until every rollout is complete.
#
# Environment:
#   KUBECTL             the kubectl command (default: kubectl), words are
#                       split: KUBECTL="kubectl --context prod" or
#                       KUBECTL="minikube kubectl --"
#   K8S_REGISTRY        registry the images were pushed to, e.g.
#                       registry.example.com:5000/microflack (default: none,
#                       for images loaded into the nodes: kind, minikube)
#   K8S_CLUSTER_DOMAIN  the cluster's DNS domain (default: cluster.local)
#   K8S_WAIT_TIMEOUT    how long --wait waits for each rollout (default: 10m)
set -euo pipefail
# shellcheck source=../../lib/common.sh
source "$(dirname "$(readlink -f "$0")")/../../lib/common.sh"
# shellcheck source=kubectl.sh
source "$(dirname "$(readlink -f "$0")")/kubectl.sh"

usage_line="[--wait]"
wait_rollouts=no
while [ $# -gt 0 ]; do
  case "$1" in
    --wait) wait_rollouts=yes ;;
    -h|--help) usage "$usage_line" "deploys MicroFlack with kubectl (see the header of $0)" ;;
    *) usage "$usage_line" "unknown argument '$1'" ;;
  esac
  shift
done

find_kubectl

registry="${K8S_REGISTRY:-}"
registry="${registry%/}"
[[ "$registry" =~ ^[A-Za-z0-9._:/-]*$ ]] ||
  die "K8S_REGISTRY is not a registry address: '$registry'"
[ -z "$registry" ] || registry="$registry/"
domain="${K8S_CLUSTER_DOMAIN:-cluster.local}"
[[ "$domain" =~ ^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$ ]] ||
  die "K8S_CLUSTER_DOMAIN is not a DNS domain: '$domain'"
wait_timeout="${K8S_WAIT_TIMEOUT:-10m}"


# render: every manifest, as one YAML stream, with the placeholders
# @<SERVICE>_VERSION@ and @LB_CONFIG_DIGEST@ filled in, the images
# prefixed with the registry and the cluster domain replaced.
render() {
  local service version var file digest
  local -a edits=()
  for service in $SERVICES; do
    [ -r "$(service_dir "$service")/VERSION" ] ||
      die "no $(service_dir "$service")/VERSION"
    version="$(service_version "$service")"
    [[ "$version" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]*$ ]] ||
      die "microflack_$service/VERSION is not an image tag: '$version'"
    var="$(tr '[:lower:]' '[:upper:]' <<< "$service")_VERSION"
    edits+=(-e "s|@${var}@|${version}|g")
  done
  digest="$(sha256sum "$MANIFESTS/lb.yaml" | cut -c1-16)"
  edits+=(-e "s|@LB_CONFIG_DIGEST@|${digest}|g"
          -e "s|^\([[:space:]]*image: \)microflack_|\1${registry}microflack_|"
          -e "s|\.svc\.cluster\.local\b|.svc.${domain}|g")
  for file in "$MANIFESTS"/*.yaml; do
    printf -- '---\n# %s\n' "${file#"$K8S_DIR"/}"
    sed "${edits[@]}" "$file"
  done
}

# secret_exists NAME: true if the Secret is there. A failing kubectl (no
# cluster, no permission) stops the deploy: never guess "missing" and
# create a second set of secrets.
secret_exists() {
  local found
  found="$(k -n "$NAMESPACE" get secret "$1" --ignore-not-found -o name)" ||
    die "cannot ask the cluster for secret $1 (is kubectl configured?)"
  [ -n "$found" ]
}

# create_secret NAME KEY=VALUE...: a new Secret, from standard input.
create_secret() {
  local name="$1" pair
  shift
  {
    printf 'apiVersion: v1\nkind: Secret\ntype: Opaque\n'
    printf 'metadata:\n  name: %s\n  namespace: %s\n' "$name" "$NAMESPACE"
    printf '  labels:\n    app.kubernetes.io/part-of: microflack\n'
    printf 'stringData:\n'
    for pair in "$@"; do
      printf '  %s: "%s"\n' "${pair%%=*}" "${pair#*=}"
    done
  } | k create -f - >/dev/null || die "could not create secret $name"
  log "created secret $name"
}

# database_url SERVICE PASSWORD: the service's SQLAlchemy URL; database and
# user are microflack_<service> (mariadb.yaml creates them).
database_url() {
  printf 'mysql+pymysql://microflack_%s:%s@mariadb:3306/microflack_%s?charset=utf8mb4\n' \
    "$1" "$2" "$1"
}

ensure_secrets() {
  local root users messages
  if secret_exists microflack-app; then
    log "secret microflack-app exists: kept"
  else
    create_secret microflack-app \
      "secret-key=$(random_secret)" "jwt-secret-key=$(random_secret)"
  fi
  if secret_exists microflack-db; then
    log "secret microflack-db exists: kept"
  else
    # Letters and digits only: they go into URLs and SQL unescaped.
    root="$(random_secret)"
    users="$(random_secret)"
    messages="$(random_secret)"
    create_secret microflack-db \
      "root-password=$root" \
      "users-password=$users" \
      "messages-password=$messages" \
      "users-database-url=$(database_url users "$users")" \
      "messages-database-url=$(database_url messages "$messages")"
  fi
}

rendered="$(mktemp)"
trap 'rm -f "$rendered"' EXIT
render > "$rendered"
if grep -n '@[A-Z_]*@' "$rendered" >&2; then
  die "placeholders left in the manifests (above)"
fi

log "namespace $NAMESPACE"
k apply -f "$MANIFESTS/00-namespace.yaml" >/dev/null ||
  die "kubectl apply of the namespace failed"
ensure_secrets
log "applying the manifests"
k apply -f - < "$rendered" || die "kubectl apply failed"

if [ "$wait_rollouts" = yes ]; then
  workloads=(statefulset/etcd statefulset/mariadb deployment/redis deployment/lb)
  for service in $SERVICES; do workloads+=("deployment/$service"); done
  for workload in "${workloads[@]}"; do
    log "waiting for $workload"
    k -n "$NAMESPACE" rollout status "$workload" --timeout="$wait_timeout" ||
      die "$workload did not become ready: kubectl -n $NAMESPACE describe $workload"
  done
fi

log "deployed. Pods: kubectl -n $NAMESPACE get pods"
log "the chat: http://<EXTERNAL-IP>/ of 'kubectl -n $NAMESPACE get service lb', or"
log "  kubectl -n $NAMESPACE port-forward service/lb 8080:80  and  http://127.0.0.1:8080/"
