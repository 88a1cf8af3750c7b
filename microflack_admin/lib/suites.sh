# shellcheck shell=bash
# The test command's steps, for mftest: preparing the host, the wheelhouse
# and a virtualenv per suite, running each suite and recording its counts,
# the Docker suite in the background, the summary. Source after common.sh
# and daemons.sh; $MF_HOME is the tests' own.

# Each suite's name and counts, a line each.
RESULTS="$MF_HOME/results"

# prepare_host SUITE...: the system packages, MariaDB and Redis the suites
# need, installed and started if missing.
prepare_host() {
  local host_options=(--with-browser --with-bench)
  case " $* " in
    *" docker "*) host_options+=(--with-docker) ;;
  esac
  "$MF_ADMIN/install/setup-host.sh" "${host_options[@]}"
  ensure_mariadb
  ensure_redis "$TEST_REDIS"
}

# Each suite's requirements are resolved on their own: services may pin
# different versions (socketio needs gunicorn 25 for eventlet).
fill_test_wheelhouse() {
  local files=("$MF_ROOT/requirements-test.txt") file
  for file in "$@"; do
    if [ -f "$file" ]; then files+=("$file"); fi
  done
  fill_wheelhouse "${files[@]}"
}

# fill_suite_wheelhouses SUITE...: the common wheel, then every wheel the
# suites' requirements name.
fill_suite_wheelhouses() {
  local suite name
  log "building the wheelhouse"
  "$MF_ADMIN/bin/mfbuild" common
  for suite in "$@"; do
    case "$suite" in
      lint) ;;
      common) fill_test_wheelhouse "$MF_ROOT/microflack_common/tests/requirements.txt" ;;
      admin|docker)
        fill_test_wheelhouse "$MF_ADMIN/requirements.txt" "$MF_ADMIN/tests/requirements.txt"
        for name in $SERVICES; do
          fill_test_wheelhouse "$(service_dir "$name")/requirements.txt"
        done
        ;;
      *)
        fill_test_wheelhouse "$(service_dir "$suite")/requirements.txt" \
          "$(service_dir "$suite")/tests/requirements.txt"
        ;;
    esac
  done
}

# record NAME PASSED FAILED
record() { printf '%s %s %s\n' "$1" "$2" "$3" >> "$RESULTS"; }

# run_pytest NAME DIR VENV [pytest args]: run and record one pytest suite.
run_pytest() {
  local name="$1" dir="$2" venv="$3" output summary passed failed errors
  shift 3
  output="$MF_HOME/$name.log"
  log "running $name"
  set +e
  (cd "$dir" && "$venv/bin/python" -m pytest -q -p no:cacheprovider "$@") \
    2>&1 | tee "$output"
  local status=${PIPESTATUS[0]}
  set -e
  # pytest's last line, unless a thread of the code under test logged
  # something after it while the interpreter shut down.
  summary="$(grep -E ' in [0-9.]+s( \([0-9:]+\))?( =+)?$' "$output" |
    tail -n 1 || true)"
  passed="$(grep -oE '[0-9]+ passed' <<< "$summary" | grep -oE '[0-9]+' || true)"
  failed="$(grep -oE '[0-9]+ failed' <<< "$summary" | grep -oE '[0-9]+' || true)"
  errors="$(grep -oE '[0-9]+ errors?' <<< "$summary" | grep -oE '[0-9]+' || true)"
  failed=$(( ${failed:-0} + ${errors:-0} ))
  # A suite that ran nothing, or crashed before or after its summary, has
  # failed.
  if [ "$failed" -eq 0 ] && { [ -z "$passed" ] || [ "$status" -ne 0 ]; }; then
    failed=1
  fi
  record "$name" "${passed:-0}" "$failed"
}

# run_node_tests NAME DIR: `npm test` (node's test runner) and its counts.
run_node_tests() {
  local name="$1" dir="$2" output passed failed
  output="$MF_HOME/$name.log"
  log "running $name"
  set +e
  (cd "$dir" && npm test --silent) 2>&1 | tee "$output"
  local status=${PIPESTATUS[0]}
  set -e
  passed="$(sed -n 's/^# pass \([0-9]*\)$/\1/p' "$output" | tail -n 1)"
  failed="$(sed -n 's/^# fail \([0-9]*\)$/\1/p' "$output" | tail -n 1)"
  if [ -z "$passed" ] || { [ "$status" -ne 0 ] && [ "${failed:-0}" -eq 0 ]; }; then
    failed=$(( ${failed:-0} + 1 ))
  fi
  record "$name" "${passed:-0}" "${failed:-0}"
}

# test_venv NAME REQUIREMENTS...: a virtualenv for one suite, refreshed
# with the current common wheel.
test_venv() {
  local venv="$MF_HOME/venvs/$1" args=() file
  shift
  for file in "$@"; do args+=(-r "$file"); done
  make_venv "$venv"
  pip_from_wheelhouse "$venv" "${args[@]}" -r "$MF_ROOT/requirements-test.txt"
  pip_from_wheelhouse "$venv" --force-reinstall --no-deps microflack-common
  printf '%s\n' "$venv"
}

# Databases and users of this checkout's test runs carry a tag of their own:
# two checkouts may run their tests on one MariaDB at once.
checkout_tag="$(printf '%s' "$MF_ROOT" | sha256sum | cut -c 1-6)"

# mariadb_test_url SERVICE: a fresh MariaDB database for one test run.
mariadb_test_url() {
  local db="mf_test${checkout_tag}_$1" user="mf_test${checkout_tag}" password
  password="$(head -c 18 /dev/urandom | base64 | tr -d '/+=')"
  local host sql="DROP DATABASE IF EXISTS $db;
CREATE DATABASE $db CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;"
  for host in $(db_client_hosts); do
    sql+="
CREATE USER IF NOT EXISTS '$user'@'$host';
ALTER USER '$user'@'$host' IDENTIFIED BY '$password';
GRANT ALL ON $db.* TO '$user'@'$host';"
  done
  mariadb_root <<< "$sql"
  printf 'mysql+pymysql://%s:%s@%s:%s/%s?charset=utf8mb4\n' \
    "$user" "$password" "$DB_HOST" "$DB_PORT" "$db"
}

run_lint() {
  local venv status=0 scripts=()
  venv="$MF_HOME/venvs/lint"
  make_venv "$venv"
  venv_pip "$venv" install --quiet ruff==0.17.6
  log "running ruff"
  if (cd "$MF_ROOT" && "$venv/bin/ruff" check .); then
    record ruff 1 0
  else
    record ruff 0 1
  fi
  log "running shellcheck"
  while IFS= read -r file; do
    if [[ "$file" == *.sh ]] || [[ "$file" == */mfvars ]] ||
        head -n 1 "$file" | grep -qE '^#!.*(ba)?sh'; then
      scripts+=("$file")
    fi
  done < <(cd "$MF_ROOT" && git ls-files --cached --others --exclude-standard |
           grep -v -e node_modules -e '\.py$' -e '\.js$' -e '\.json$' |
           sed "s|^|$MF_ROOT/|")
  shellcheck "${scripts[@]}" || status=1
  if [ $status -eq 0 ]; then record shellcheck 1 0; else record shellcheck 0 1; fi
}

# run_suite NAME: one suite, its counts recorded.
run_suite() {
  local suite="$1" dir venv requirement_files
  case "$suite" in
    lint) run_lint ;;
    common)
      venv="$(test_venv common "$MF_ROOT/microflack_common/tests/requirements.txt")"
      run_pytest common "$MF_ROOT/microflack_common" "$venv" tests
      ;;
    admin)
      venv="$(test_venv admin "$MF_ADMIN/requirements.txt" \
        "$MF_ADMIN/tests/requirements.txt")"
      MF_TEST_WHEELHOUSE="$WHEELHOUSE" run_pytest admin "$MF_ADMIN" "$venv" \
        tests --ignore=tests/test_docker.py --durations=12
      ;;
    docker)
      venv="$(test_venv admin "$MF_ADMIN/requirements.txt" \
        "$MF_ADMIN/tests/requirements.txt")"
      MF_TEST_WHEELHOUSE="$WHEELHOUSE" run_pytest docker "$MF_ADMIN" "$venv" \
        tests/test_docker.py --durations=12
      ;;
    *)
      dir="$(service_dir "$suite")"
      requirement_files=("$dir/requirements.txt")
      if [ -f "$dir/tests/requirements.txt" ]; then
        requirement_files+=("$dir/tests/requirements.txt")
      fi
      venv="$(test_venv "$suite" "${requirement_files[@]}")"
      if [ -f "$dir/package.json" ]; then
        (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error &&
          npm run --silent build)
        if grep -q '"test"' "$dir/package.json"; then
          run_node_tests "$suite-js" "$dir"
        fi
      fi
      run_pytest "$suite" "$dir" "$venv" tests
      case " $SERVICES_WITH_DB " in
        *" $suite "*)
          TEST_DATABASE_URL="$(mariadb_test_url "$suite")" \
            run_pytest "$suite-mariadb" "$dir" "$venv" tests
          ;;
      esac
      ;;
  esac
}

# The docker suite runs beside the others, in the background, from when the
# ui suite has built the front-end files that both use; its first minutes
# build images, which the unit suites hardly notice. The admin suite waits
# for it: both run a whole platform under load. Its output follows the
# others'.
docker_lane=
docker_output="$MF_HOME/docker.out"
start_docker_lane() {
  log "the docker suite runs in the background (output: $docker_output)"
  run_suite docker > "$docker_output" 2>&1 &
  docker_lane=$!
}
finish_docker_lane() {
  [ -n "$docker_lane" ] || return 0
  log "waiting for the docker suite"
  wait "$docker_lane" || true
  docker_lane=
  cat "$docker_output"
}

# run_suites SUITE...: each suite in turn, the Docker suite beside the
# others from when the ui suite has built the front-end files both use.
run_suites() {
  local foreground=() with_docker='' suite
  for suite in "$@"; do
    case "$suite" in
      docker) with_docker=1 ;;
      ui) foreground=(ui "${foreground[@]}") ;;
      *) foreground+=("$suite") ;;
    esac
  done
  if [ -n "$with_docker" ] && [ "${foreground[0]:-}" != ui ]; then
    start_docker_lane
  fi
  for suite in "${foreground[@]}"; do
    if [ "$suite" = admin ]; then finish_docker_lane; fi
    run_suite "$suite"
    if [ -n "$with_docker" ] && [ "$suite" = ui ]; then start_docker_lane; fi
  done
  finish_docker_lane
}

# report_results: the table of suites and their counts; fails when
# anything failed.
report_results() {
  local name passed failed total_passed=0 total_failed=0
  printf '\n%-20s %8s %8s\n' suite passed failed
  while read -r name passed failed; do
    printf '%-20s %8s %8s\n' "$name" "$passed" "$failed"
    total_passed=$((total_passed + passed))
    total_failed=$((total_failed + failed))
  done < "$RESULTS"
  echo
  echo "mftest: $total_passed passed, $total_failed failed"
  [ "$total_failed" -eq 0 ]
}
