# shellcheck shell=bash
# What deploy.sh and delete.sh share: where the manifests are, the
# namespace, and how kubectl is called. Sourced, after lib/common.sh.

K8S_DIR="$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")"
# shellcheck disable=SC2034  # read by the scripts that source this
MANIFESTS="$K8S_DIR/manifests"
# shellcheck disable=SC2034
NAMESPACE=microflack

# find_kubectl: the kubectl command from KUBECTL (default: kubectl), its
# words split ("minikube kubectl --"); dies when it is not installed.
find_kubectl() {
  read -r -a kubectl <<< "${KUBECTL:-kubectl}"
  [ ${#kubectl[@]} -gt 0 ] || die "KUBECTL is empty"
  command -v "${kubectl[0]}" >/dev/null 2>&1 ||
    die "'${kubectl[0]}' is not installed (or set KUBECTL to the kubectl command)"
}

# k ARGS...: kubectl, as find_kubectl found it.
k() { "${kubectl[@]}" "$@"; }
