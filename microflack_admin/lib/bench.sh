# shellcheck shell=bash
# The benchmarks' Python. Source after common.sh.

# bench_python: an interpreter with the benchmarks' libraries (python-socketio
# client, aiohttp, requests): a virtualenv in $MF_HOME/bench-venv made on first
# use from microflack_admin/tests/requirements.txt (wheelhouse first, then the
# package index); MFBENCH_PYTHON=<python> names another one instead.
bench_python() {
  local requirements="$MF_ADMIN/tests/requirements.txt" venv stamp wanted
  if [ -n "${MFBENCH_PYTHON:-}" ]; then
    command -v "$MFBENCH_PYTHON" >/dev/null 2>&1 ||
      die "MFBENCH_PYTHON=$MFBENCH_PYTHON is not an interpreter"
    printf '%s\n' "$MFBENCH_PYTHON"
    return 0
  fi
  venv="$MF_HOME/bench-venv"
  stamp="$venv/.requirements.sha256"
  wanted="$(sha256sum "$requirements" | cut -d ' ' -f 1)"
  if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
    log "preparing $venv"
    make_venv "$venv"
    venv_pip "$venv" install --quiet --find-links "$WHEELHOUSE" -r "$requirements" >&2 ||
      die "cannot install $requirements into $venv"
    printf '%s\n' "$wanted" > "$stamp"
  fi
  printf '%s\n' "$venv/bin/python"
}
