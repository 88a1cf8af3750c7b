# shellcheck shell=bash disable=SC2154
# (SC2154: usage_line is mfupgrade's, which checks the verbs' arguments
# with it.)
# The steps of an upgrade without downtime, for mfupgrade: its state file,
# starting new instances, retiring old ones (lib/instances.sh's retire),
# try, roll, abort and status. Source after common.sh, daemons.sh and
# instances.sh; mfupgrade holds the upgrade lock while they run.

STATE="$UPGRADE_STATE"
# Seconds an old instance may take to finish its requests and let its
# WebSocket clients go before it is stopped anyway.
DRAIN_TIMEOUT="${DRAIN_TIMEOUT:-5}"
ROUTE_TIMEOUT="${ROUTE_TIMEOUT:-10}"

# -- the state file: NAME=value lines ----------------------------------

# save_state NAME=value...: replace the state file atomically.
save_state() {
  mkdir -p "$(dirname "$STATE")"
  printf '%s\n' "$@" > "$STATE.tmp"
  mv "$STATE.tmp" "$STATE"
}

# add_new INSTANCE: remember an instance this upgrade started.
add_new() {
  save_state "SERVICE=$(upgrade_state SERVICE)" "TAG=$(upgrade_state TAG)" \
    "OLD_TAGS=$(upgrade_state OLD_TAGS)" "OLD_COUNT=$(upgrade_state OLD_COUNT)" \
    "NEW=$(upgrade_state NEW) $1"
}

pending_message() {
  printf 'an upgrade of %s to %s is pending (new: %s): finish it with "mfupgrade roll" or undo it with "mfupgrade abort"' \
    "$(upgrade_state SERVICE)" "$(upgrade_state TAG)" "$(upgrade_state NEW | xargs)"
}

# -- instances ---------------------------------------------------------

# run_instance SERVICE TAG: mfrun, without the upgrade lock's descriptor
# (the instance would hold the lock for its whole life).
run_instance() { "$MF_ADMIN/bin/mfrun" "$1" "$2" 9>&-; }

# live_instances SERVICE: its instances that run.
live_instances() {
  local instance
  for instance in $(instances "$1"); do
    if instance_alive "$instance"; then printf '%s\n' "$instance"; fi
  done
}

# old_instances SERVICE TAG: its running instances of other builds.
old_instances() {
  local instance
  for instance in $(live_instances "$1"); do
    [ "$(instance_field "$instance" TAG)" = "$2" ] || printf '%s\n' "$instance"
  done
}

# start_new SERVICE TAG: one more instance of the new build, healthy and
# routed, remembered in the state; fails (and says why) otherwise.
start_new() {
  local instance
  if ! instance="$(ROUTE_TIMEOUT="$ROUTE_TIMEOUT" run_instance "$1" "$2")"; then
    return 1
  fi
  add_new "$instance"
  # mfrun saw it routed; a first health check under load may still have
  # failed since: give it the time a check needs to pass again.
  if lb_stats >/dev/null 2>&1 &&
      ! wait_until "$ROUTE_TIMEOUT" lb_reports_up "$instance"; then
    log "$instance is healthy but the load balancer does not route to it"
    return 1
  fi
  printf '%s\n' "$instance"
}

# -- the verbs ---------------------------------------------------------

upgrade_status() {
  [ $# -eq 0 ] || usage "$usage_line"
  if [ -f "$STATE" ]; then
    printf 'service: %s\nnew build: %s\nold builds: %s\nnew instances: %s\n' \
      "$(upgrade_state SERVICE)" "$(upgrade_state TAG)" "$(upgrade_state OLD_TAGS)" "$(upgrade_state NEW | xargs)"
  else
    echo "no upgrade is pending"
  fi
}

# target_tag SERVICE [TAG]: the build to upgrade to (the newest one).
target_tag() {
  local tag="${2:-$(newest_tag "$1")}"
  [ -n "$tag" ] || die "no build of $1: run mfbuild $1"
  check_name tag "$tag"
  builds "$1" | grep -qxF -- "$tag" ||
    die "no build $1 $tag (builds: $(builds "$1" | xargs))"
  printf '%s\n' "$tag"
}

# begin SERVICE TAG: record a new upgrade; dies if nothing is to upgrade.
begin() {
  local service="$1" tag="$2" old old_tags
  old="$(old_instances "$service" "$tag")"
  [ -n "$old" ] ||
    die "nothing to upgrade: every running $service instance is $tag (or none runs)"
  old_tags="$(for i in $old; do instance_field "$i" TAG; done | sort -uV | xargs)"
  save_state "SERVICE=$service" "TAG=$tag" "OLD_TAGS=$old_tags" \
    "OLD_COUNT=$(wc -w <<< "$old")" "NEW="
}

upgrade_try() {
  if [ $# -lt 1 ] || [ $# -gt 2 ]; then usage "$usage_line"; fi
  check_service "$1"
  local service="$1" tag instance
  tag="$(target_tag "$service" "${2:-}")"
  begin "$service" "$tag"
  log "trying $service $tag beside $(old_instances "$service" "$tag" | xargs)"
  if ! instance="$(start_new "$service" "$tag")"; then
    log "$service $tag did not start: the old instances keep serving"
    abort_upgrade
    exit 1
  fi
  printf '%s\n' "$instance"
  log "$instance serves beside the old instances: mfupgrade roll (keep it) or mfupgrade abort"
  if [ -t 1 ]; then
    exec 9>&-
    exec "$MF_ADMIN/bin/mflogs" "$instance"
  fi
}

upgrade_roll() {
  [ $# -le 2 ] || usage "$usage_line"
  local service tag old instance new replaced=0
  if [ -f "$STATE" ]; then
    service="$(upgrade_state SERVICE)"
    tag="$(upgrade_state TAG)"
    if [ -n "${1:-}" ] && [ "$1" != "$service" ]; then
      die "$(pending_message)"
    fi
  else
    [ $# -ge 1 ] || usage "$usage_line" "no try is pending: name the service"
    check_service "$1"
    service="$1"
    tag="$(target_tag "$service" "${2:-}")"
    begin "$service" "$tag"
  fi
  mapfile -t old < <(old_instances "$service" "$tag")
  # Instances started by a try (or an interrupted roll) that still run
  # already replace as many old ones.
  for instance in $(upgrade_state NEW); do
    if [ -f "$INSTANCES_DIR/$instance.info" ] && instance_alive "$instance"; then
      replaced=$((replaced + 1))
    fi
  done
  log "rolling $service to $tag: ${#old[@]} old instance(s)"
  # An old instance is retired (out of rotation, drained, stopped) while
  # the next new one starts: its replacement is already routed, so as
  # many instances as before serve throughout, and the roll takes less
  # time.
  local retiring=() pid failed=0
  for instance in "${old[@]}"; do
    if [ "$replaced" -gt 0 ]; then
      replaced=$((replaced - 1))
    elif ! new="$(start_new "$service" "$tag")"; then
      for pid in "${retiring[@]}"; do wait "$pid" || true; done
      die "$service $tag is not healthy: the roll stopped; $(old_instances "$service" "$tag" | xargs) keep serving (mfupgrade abort undoes it)"
    else
      log "started $new"
    fi
    retire "$instance" &
    retiring+=("$!")
  done
  for pid in "${retiring[@]}"; do wait "$pid" || failed=1; done
  [ "$failed" -eq 0 ] ||
    die "an old $service instance could not be stopped (see above); mfupgrade status"
  rm -f "$STATE"
  log "$service runs $tag: $(live_instances "$service" | xargs)"
}

# abort_upgrade: stop the instances this upgrade started, then bring the
# old builds back to their number, and forget the upgrade.
abort_upgrade() {
  local service old_tag count running instance
  service="$(upgrade_state SERVICE)"
  for instance in $(upgrade_state NEW); do
    if [ -f "$INSTANCES_DIR/$instance.info" ]; then
      retire "$instance"
    fi
  done
  # The newest of the old builds replaces what a roll had stopped.
  old_tag="$(upgrade_state OLD_TAGS | tr ' ' '\n' | tail -n 1)"
  count="$(upgrade_state OLD_COUNT)"
  running="$(old_instances "$service" "$(upgrade_state TAG)" | wc -l)"
  while [ "$running" -lt "${count:-0}" ]; do
    log "started $(run_instance "$service" "$old_tag")"
    running=$((running + 1))
  done
  rm -f "$STATE"
}

upgrade_abort() {
  [ $# -eq 0 ] || usage "$usage_line"
  [ -f "$STATE" ] || die "no upgrade is pending"
  local service
  service="$(upgrade_state SERVICE)"
  abort_upgrade
  log "aborted: $service runs $(live_instances "$service" | xargs)"
}
