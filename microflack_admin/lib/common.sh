# shellcheck shell=bash
# Functions shared by the mf* scripts: source it, never run it.
#   source "$(dirname "$0")/../lib/common.sh"
# It loads mfvars, so every script sees the same environment.

# shellcheck source=../mfvars
source "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/mfvars"
# shellcheck source=processes.sh
source "$MF_ADMIN/lib/processes.sh"
# shellcheck source=registry.sh
source "$MF_ADMIN/lib/registry.sh"

MF_SCRIPT="$(basename "$0")"

# Messages go to stderr so that stdout stays for results (ids, URLs).
log() { printf '%s: %s\n' "$MF_SCRIPT" "$*" >&2; }
die() { printf '%s: error: %s\n' "$MF_SCRIPT" "$*" >&2; exit 1; }

# usage "<arguments>" [details]: print the usage line and exit 2.
usage() {
  printf 'usage: %s %s\n' "$MF_SCRIPT" "$1" >&2
  [ -n "${2:-}" ] && printf '%s\n' "$2" >&2
  exit 2
}

need_cmd() {
  local cmd
  for cmd in "$@"; do
    command -v "$cmd" >/dev/null 2>&1 ||
      die "'$cmd' is not installed: run microflack_admin/install/setup-host.sh"
  done
}

is_service() {
  local name
  for name in $SERVICES; do
    [ "$name" = "$1" ] && return 0
  done
  return 1
}

# check_service NAME: die with the list of services unless NAME is one.
check_service() {
  is_service "$1" || die "unknown service '$1' (services: $SERVICES)"
}

# name_problem KIND NAME: fails, printing why, unless NAME is a good name
# of its KIND (service, tag or instance); prints nothing for a good one.
# The rules live once, in microflack_common/names.py, which the services'
# registration and the load balancer use too (any python3 runs it).
name_problem() {
  python3 "$MF_ROOT/microflack_common/src/microflack_common/names.py" \
    "$1" "$2" 2>&1
}

# check_name KIND NAME: die unless NAME is a good name of its KIND.
check_name() {
  local problem
  problem="$(name_problem "$1" "$2")" || die "$problem"
}

# check_runtime: die unless MICROFLACK_RUNTIME is one we know.
check_runtime() {
  case "$MICROFLACK_RUNTIME" in
    native|docker) ;;
    *) die "MICROFLACK_RUNTIME must be native or docker, not '$MICROFLACK_RUNTIME'" ;;
  esac
}

# service_dir NAME: the source folder of a service.
service_dir() { printf '%s/microflack_%s\n' "$MF_ROOT" "$1"; }

# service_version NAME: the version a build of the service carries.
service_version() { tr -d '[:space:]' < "$(service_dir "$1")/VERSION"; }

# common_version: the version of the microflack_common wheel.
common_version() {
  sed -n 's/^__version__ = "\(.*\)"$/\1/p' \
    "$MF_ROOT/microflack_common/src/microflack_common/__init__.py"
}

# python_for_venvs: the Python that creates the platform's virtualenvs:
# MF_PYTHON if set, else the distribution's /usr/bin/python3 when it is
# 3.11 or newer and can make virtualenvs (Debian builds it with PGO and LTO:
# it runs the services about a fifth faster than a self-compiled python3
# that may come first on PATH, pyenv's for one), else python3.
python_for_venvs() {
  local python="${MF_PYTHON:-}"
  if [ -z "$python" ]; then
    python=python3
    if /usr/bin/python3 -c 'import sys, venv, ensurepip
sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      python=/usr/bin/python3
    fi
  fi
  command -v "$python" >/dev/null 2>&1 || die "'$python' is not installed"
  "$python" -c 'import venv, ensurepip' 2>/dev/null ||
    die "$python cannot create virtualenvs: install python3-venv"
  printf '%s\n' "$python"
}

# make_venv DIR: create (or reuse) a virtualenv. It gets no pip of its
# own (ensurepip would double the time of a build): venv_pip installs into
# it.
make_venv() {
  if [ ! -x "$1/bin/python" ]; then
    "$(python_for_venvs)" -m venv --without-pip "$1"
  fi
}

# shared_pip ARGS...: pip, from one virtualenv that holds pip for all the
# others and builds the wheelhouse: MF_PIP_VENV, by default in the user's
# cache (it holds nothing but pip, so every MF_HOME shares it; the system
# Python needs no pip of its own).
shared_pip() {
  local tool="${MF_PIP_VENV:-${XDG_CACHE_HOME:-${HOME:-$MF_HOME}/.cache}/microflack/pip-venv}"
  local python identity
  python="$(python_for_venvs)"
  # pip resolves the requirements' markers (redis wants async-timeout on
  # Python < 3.11.3) for the Python it runs on: the one of the virtualenvs
  # it fills. The default one, if another Python made it, is made again
  # (a MF_PIP_VENV given is used as it is).
  identity="$("$python" -c 'import sys; print(sys.base_prefix, sys.version)')"
  if [ ! -x "$tool/bin/pip" ] || { [ -z "${MF_PIP_VENV:-}" ] &&
      [ "$(cat "$tool/.python" 2>/dev/null)" != "$identity" ]; }; then
    local fresh
    if [ -n "${MF_PIP_VENV:-}" ] && [ -e "$tool" ]; then
      die "MF_PIP_VENV=$tool has no pip: name a virtualenv with pip, or a path that does not exist yet"
    fi
    rm -rf "$tool"      # an unfinished one, or another Python's
    mkdir -p "$(dirname "$tool")"
    fresh="$(mktemp -d "$tool.XXXXXX")"
    "$python" -m venv "$fresh" ||
      die "cannot create a virtualenv in $fresh (is python3-venv installed?)"
    printf '%s\n' "$identity" > "$fresh/.python"
    # Made aside, then moved in whole; if another build was quicker, its
    # pip is used.
    mv -T "$fresh" "$tool" 2>/dev/null || rm -rf "$fresh"
  fi
  "$tool/bin/python" -m pip --disable-pip-version-check "$@"
}

# venv_pip VENV ARGS...: the shared pip, acting on VENV (pip's --python).
venv_pip() {
  local venv="$1"
  shift
  shared_pip --python "$venv/bin/python" "$@"
}

# pip_from_wheelhouse VENV ARGS...: install from the wheelhouse only.
pip_from_wheelhouse() {
  local venv="$1"
  shift
  venv_pip "$venv" install --quiet --no-index --find-links "$WHEELHOUSE" "$@"
}

# fill_wheelhouse REQUIREMENTS...: every dependency of the requirements
# files as a wheel in $WHEELHOUSE, so that releases and images install
# offline. The package index is asked only when the wheelhouse lacks
# something.
fill_wheelhouse() {
  local args=(wheel --quiet --wheel-dir "$WHEELHOUSE" --find-links "$WHEELHOUSE")
  local file
  for file in "$@"; do args+=(-r "$file"); done
  mkdir -p "$WHEELHOUSE"
  shared_pip "${args[@]}" --no-index >/dev/null 2>&1 || shared_pip "${args[@]}"
}

# random_secret: 40 letters and digits from the kernel's CSPRNG.
random_secret() {
  local secret=""
  while [ ${#secret} -lt 40 ]; do
    secret+="$(head -c 64 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')"
  done
  printf '%s\n' "${secret:0:40}"
}

# secrets_dir: the folder for secret files, only its owner may enter.
secrets_dir() {
  local dir="$MF_HOME/secrets"
  (umask 077 && mkdir -p "$dir")
  chmod 700 "$dir"
  printf '%s\n' "$dir"
}

# save_settings SCRIPT SETTING...: this host's settings file
# ($MF_HOME/microflack.conf, made by SCRIPT if missing) gets each SETTING
# it lacks: NAME with its value now, or NAME=VALUE. Saved once, never
# changed by later runs; a variable set in the environment wins over the
# file when mfvars reads it.
save_settings() {
  local script="$1" conf="$MF_HOME/microflack.conf" setting name value
  shift
  mkdir -p "$MF_HOME"
  if [ ! -f "$conf" ]; then
    printf '# MicroFlack settings of this host (written by %s).\n# %s\n' \
      "$script" 'A variable set in the environment wins over the value here.' \
      > "$conf"
    log "settings saved in $conf"
  fi
  for setting in "$@"; do
    name="${setting%%=*}"
    value="${!name:-}"
    if [[ "$setting" == *=* ]]; then value="${setting#*=}"; fi
    if ! grep -q "^$name=" "$conf"; then
      # shellcheck disable=SC2016 # the line expands when mfvars reads it
      printf '%s=${%s:-%s}\n' "$name" "$name" "$value" >> "$conf"
    fi
  done
}

# add_secret FILE NAME: append NAME=<random> to FILE unless NAME is there;
# existing secrets are never regenerated.
add_secret() {
  local file="$1" name="$2"
  (umask 077 && touch "$file")
  chmod 600 "$file"
  grep -q "^$name=" "$file" && return 0
  printf '%s=%s\n' "$name" "$(random_secret)" >> "$file"
}
