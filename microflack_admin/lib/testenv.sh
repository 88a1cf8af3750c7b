# shellcheck shell=bash
# The test command's environment: source it, then call
#   keep_test_environment
# before lib/common.sh (which loads mfvars).

# keep_test_environment: unexport every variable of the caller's
# environment that microflack_admin/tests/passenv does not name, and set
# MF_HOME to the tests' own (MF_TEST_HOME, by default .test-home in the
# checkout). mfvars then loads the tests' settings and the project's
# defaults, never this host's installation (~/.microflack/microflack.conf,
# its secrets) nor settings the caller exported.
keep_test_environment() {
  local root patterns=() line name pattern keep
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
  while IFS= read -r line; do
    line="${line%%#*}"
    line="${line//[[:space:]]/}"
    if [ -n "$line" ]; then patterns+=("$line"); fi
  done < "$root/microflack_admin/tests/passenv"
  while IFS= read -r name; do
    keep=
    for pattern in "${patterns[@]}"; do
      # shellcheck disable=SC2053 # the pattern is a glob
      if [[ "$name" == $pattern ]]; then keep=1; break; fi
    done
    # Read-only ones (bash's own) cannot go, and mean nothing to a test.
    if [ -z "$keep" ]; then unset "$name" 2>/dev/null || true; fi
  done < <(compgen -e)
  # Exported functions reach every bash script a test runs.
  while IFS= read -r name; do
    unset -f "$name"
  done < <(declare -Fx | cut -d ' ' -f 3)
  export MF_HOME="${MF_TEST_HOME:-$root/.test-home}"
  export WHEELHOUSE="$MF_HOME/wheelhouse"
}
