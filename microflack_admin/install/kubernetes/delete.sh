#!/usr/bin/env bash
# Remove MicroFlack from the Kubernetes cluster kubectl points at.
#
#   delete.sh                every resource of the manifests; the data stays:
#                            the PersistentVolumeClaims of MariaDB and etcd,
#                            the Secrets whose passwords open them, and the
#                            namespace that holds both. A later deploy.sh
#                            finds them again.
#   delete.sh --with-data    the whole namespace "microflack": also the
#                            PersistentVolumeClaims (the chat's users and
#                            messages are gone) and the Secrets.
#
# Environment: KUBECTL, the kubectl command (default: kubectl; see
# deploy.sh).
set -euo pipefail
# shellcheck source=../../lib/common.sh
source "$(dirname "$(readlink -f "$0")")/../../lib/common.sh"
# shellcheck source=kubectl.sh
source "$(dirname "$(readlink -f "$0")")/kubectl.sh"

usage_line="[--with-data]"
with_data=no
while [ $# -gt 0 ]; do
  case "$1" in
    --with-data) with_data=yes ;;
    -h|--help) usage "$usage_line" "without --with-data the data (PersistentVolumeClaims) and the secrets are kept" ;;
    *) usage "$usage_line" "unknown argument '$1'" ;;
  esac
  shift
done

find_kubectl


if [ "$with_data" = yes ]; then
  log "deleting namespace $NAMESPACE with all its data and secrets"
  k delete namespace "$NAMESPACE" --ignore-not-found ||
    die "kubectl delete namespace $NAMESPACE failed"
  log "deleted. PersistentVolumes whose reclaim policy is Retain are left to the cluster's administrator"
  exit 0
fi

# Everything the manifests create but the namespace. Deleting the
# StatefulSets leaves their PersistentVolumeClaims (data-mariadb-0,
# data-etcd-<n>) in place.
files=()
for file in "$MANIFESTS"/*.yaml; do
  [ "$(basename "$file")" = 00-namespace.yaml ] && continue
  files+=(-f "$file")
done
log "deleting the MicroFlack resources in namespace $NAMESPACE"
k delete --ignore-not-found "${files[@]}" || die "kubectl delete failed"
log "kept: the data (PersistentVolumeClaims) and the secrets of namespace $NAMESPACE:"
log "  kubectl -n $NAMESPACE get pvc,secrets"
log "to delete them too: $0 --with-data"
