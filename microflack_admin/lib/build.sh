# shellcheck shell=bash
# The build steps, for mfbuild: the shared wheel, then a service's release
# (native) or image (docker), each skipped when its source did not change.
# Source after common.sh, daemons.sh, instances.sh and images.sh.

# What mfbuild was asked: build from this git commit (empty: the working
# tree) and under this tag (empty: the source's VERSION).
from_ref=
tag=
# The commit's tree, unpacked (with --from).
source_root=
# The base image of this run's service images, found once.
base=
base_id=

# use_source_of REF SERVICE: build SERVICE as it was at commit REF.
use_source_of() {
  need_cmd git
  git -C "$MF_ROOT" rev-parse --verify --quiet "$1^{commit}" >/dev/null ||
    die "'$1' is not a commit of this repository"
  source_root="$(mktemp -d)"
  trap 'rm -rf "$source_root"' EXIT
  git -C "$MF_ROOT" archive "$1" "microflack_$2" | tar -C "$source_root" -xf - ||
    die "microflack_$2 is not in $1"
  log "building $2 from $(git -C "$MF_ROOT" rev-parse --short "$1")"
  from_ref="$1"
}

# source_dir NAME: the folder a service is built from.
source_dir() {
  if [ -n "$from_ref" ]; then
    printf '%s/microflack_%s\n' "$source_root" "$1"
  else
    service_dir "$1"
  fi
}

# build_tag NAME: the tag of the build (the source's VERSION by default).
build_tag() {
  if [ -n "$tag" ]; then
    printf '%s\n' "$tag"
  else
    tr -d '[:space:]' < "$(source_dir "$1")/VERSION"
  fi
}

# common_checksum: identifies the source of the shared package.
common_checksum() {
  tar -C "$MF_ROOT/microflack_common" --exclude=__pycache__ --exclude='*.pyc' \
    --exclude='*.egg-info' --sort=name --mtime=@0 --owner=0 --group=0 \
    --numeric-owner -cf - pyproject.toml src | sha256sum | cut -d' ' -f1
}

build_common() {
  need_cmd "$(python_for_venvs)"
  mkdir -p "$WHEELHOUSE"
  local version tmp checksum stamp="$WHEELHOUSE/.microflack_common.checksum"
  version="$(common_version)"
  checksum="$(common_checksum)"
  if [ "$(cat "$stamp" 2>/dev/null)" = "$checksum" ] &&
      compgen -G "$WHEELHOUSE/microflack_common-$version-*.whl" >/dev/null; then
    log "microflack_common $version is up to date"
    return 0
  fi
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"; trap - RETURN' RETURN
  log "building microflack_common $version into $WHEELHOUSE"
  rm -rf "$MF_ROOT/microflack_common/build"   # no stale modules in the wheel
  shared_pip wheel --quiet --no-deps --wheel-dir "$tmp" \
    "$MF_ROOT/microflack_common"
  # Same version, new code: the wheel is replaced, never duplicated.
  rm -f "$WHEELHOUSE"/microflack_common-*.whl
  mv "$tmp"/microflack_common-*.whl "$WHEELHOUSE/"
  printf '%s\n' "$checksum" > "$stamp"
}

# service_source NAME: the files a release of the service holds, as a
# reproducible tar stream (so that its checksum identifies the source).
service_source() {
  tar -C "$(source_dir "$1")" --exclude=tests --exclude=node_modules \
    --exclude=__pycache__ --exclude='*.sqlite' --exclude=.pytest_cache \
    --exclude=.ruff_cache --exclude='*.pyc' \
    --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf - .
}

# build_assets NAME: the front-end libraries a service serves (npm), made
# again only when the lock file or the copy script changed since (the stamp
# lives in node_modules/, which npm ci recreates).
build_assets() {
  local dir stamp wanted
  dir="$(source_dir "$1")"
  [ -f "$dir/package.json" ] || return 0
  stamp="$dir/node_modules/.microflack-build"
  wanted="$(cat "$dir/package.json" "$dir/package-lock.json" \
    "$dir"/*.js 2>/dev/null | sha256sum | cut -d' ' -f1)"
  if [ "$(cat "$stamp" 2>/dev/null)" = "$wanted" ] &&
      [ -n "$(ls -A "$dir/static/vendor" 2>/dev/null)" ]; then
    return 0
  fi
  need_cmd npm
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error &&
    npm run --silent build)
  printf '%s\n' "$wanted" > "$stamp"
}

# refuse_if_running NAME VERSION: a changed build must not replace one
# that runs. Only this runtime's instances run this build: a release and
# an image of the same version are different builds (an instance of the
# other runtime blocks nothing, e.g. while setup-all-in-one.sh switches).
refuse_if_running() {
  local instance
  for instance in $(instances "$1"); do
    if [ "$(instance_field "$instance" TAG)" = "$2" ] &&
        [ "$(instance_runtime "$instance")" = "$MICROFLACK_RUNTIME" ] &&
        instance_alive "$instance"; then
      die "$1 $2 has changed but runs as $instance: give the service a new VERSION (or mfkill $1 first)"
    fi
  done
}

build_release() {
  local name="$1" dir version release checksum
  dir="$(source_dir "$name")"
  version="$(build_tag "$name")"
  release="$(release_dir "$name" "$version")"
  build_assets "$name"
  checksum="$( (common_checksum; service_source "$name") |
    sha256sum | cut -d' ' -f1)"
  if [ "$(cat "$release/.checksum" 2>/dev/null)" = "$checksum" ]; then
    log "$name $version is up to date"
    return 0
  fi
  refuse_if_running "$name" "$version"
  log "building $name $version"
  fill_wheelhouse "$dir/requirements.txt"
  # Built in place (a virtualenv cannot be moved); a failed build leaves
  # nothing behind.
  rm -rf "$release"
  mkdir -p "$release"
  trap 'rm -rf "$release"' ERR
  service_source "$name" | tar -C "$release" -xf -
  make_venv "$release/venv"
  pip_from_wheelhouse "$release/venv" -r "$dir/requirements.txt"
  printf '%s\n' "$checksum" > "$release/.checksum"
  trap - ERR
  log "$name $version is in $release"
}

# base_image: the image the service images start from (BASE_IMAGE wins):
# the official Python image if it is here or can be pulled, else the local
# Debian one, built once.
base_image() {
  if [ -n "${BASE_IMAGE:-}" ]; then
    docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 ||
      timeout 120 docker pull --quiet "$BASE_IMAGE" >/dev/null ||
      die "BASE_IMAGE=$BASE_IMAGE is neither here nor pullable"
    printf '%s\n' "$BASE_IMAGE"
  elif docker image inspect "$OFFICIAL_BASE_IMAGE" >/dev/null 2>&1; then
    printf '%s\n' "$OFFICIAL_BASE_IMAGE"
  elif docker image inspect "$LOCAL_BASE_IMAGE" >/dev/null 2>&1; then
    printf '%s\n' "$LOCAL_BASE_IMAGE"
  elif timeout 60 docker pull --quiet "$OFFICIAL_BASE_IMAGE" >/dev/null 2>&1; then
    printf '%s\n' "$OFFICIAL_BASE_IMAGE"
  else
    log "$OFFICIAL_BASE_IMAGE cannot be pulled: building $LOCAL_BASE_IMAGE"
    "$MF_ADMIN/install/make-base-image.sh" >&2
    printf '%s\n' "$LOCAL_BASE_IMAGE"
  fi
}

# docker_build LOG ARGS...: `docker build` on the host's network (bridges
# are off), its output shown only when it fails.
docker_build() {
  local output="$1"
  shift
  if ! docker build --network host --force-rm "$@" > "$output" 2>&1; then
    tail -n 30 "$output" >&2
    die "docker build failed (output above)"
  fi
}

build_image() {
  local name="$1" dir version image checksum tmp dockerfile
  need_docker
  dir="$(source_dir "$name")"
  version="$(build_tag "$name")"
  image="$(image_name "$name")"
  build_assets "$name"
  [ -n "$base_id" ] || {
    base="$(base_image)"
    base_id="$(docker image inspect --format '{{.Id}}' "$base")"
  }
  # A service's Dockerfile links to the shared one (also when built from
  # an older commit, whose archive holds the link but not its target).
  # (readlink -f fails on such a link: that is no error here.)
  dockerfile="$(readlink -f "$dir/Dockerfile" || true)"
  [ -f "$dockerfile" ] || dockerfile="$MF_ADMIN/docker/service.Dockerfile"
  checksum="$( (common_checksum; service_source "$name"; cat "$dockerfile"
    echo "$base_id") | sha256sum | cut -d' ' -f1)"
  if [ "$(image_label "$image:$version" org.microflack.checksum)" = "$checksum" ]; then
    log "$image:$version is up to date"
    docker tag "$image:$version" "$image:latest"
    return 0
  fi
  refuse_if_running "$name" "$version"
  log "building $image:$version"
  fill_wheelhouse "$dir/requirements.txt" "$MF_ADMIN/image-requirements.txt"
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"; trap - RETURN' RETURN
  # Exactly the wheels this service needs, as an image its build copies.
  mkdir "$tmp/wheels"
  shared_pip download --quiet --no-index --find-links "$WHEELHOUSE" \
    --dest "$tmp/wheels" \
    -r "$dir/requirements.txt" -r "$MF_ADMIN/image-requirements.txt"
  printf 'FROM scratch\nLABEL org.microflack.stage=build\nCOPY . /wheels\n' \
    > "$tmp/Dockerfile"
  docker_build "$tmp/build.log" --tag "$(wheels_image "$name")" \
    --file "$tmp/Dockerfile" "$tmp/wheels"
  # The virtualenv stage first, under a name: the next build of the
  # service finds it in Docker's cache when its requirements are the same.
  docker_build "$tmp/build.log" --file "$dockerfile" --target venv \
    --build-arg "BASE_IMAGE=$base" \
    --build-arg "WHEELS_IMAGE=$(wheels_image "$name")" \
    --tag "$(venv_image "$name")" "$dir"
  docker_build "$tmp/build.log" --file "$dockerfile" \
    --build-arg "SERVICE=$name" \
    --build-arg "FLASK_APP=$(flask_app_of "$dir" "$name")" \
    --build-arg "BASE_IMAGE=$base" \
    --build-arg "WHEELS_IMAGE=$(wheels_image "$name")" \
    --label "org.microflack.checksum=$checksum" \
    --label "version=$version" \
    --tag "$image:$version" --tag "$image:latest" "$dir"
  # The build stages' leftovers (the wheels and venv images stay, tagged).
  docker image prune --force --filter label=org.microflack.stage=build >/dev/null
  log "built $image:$version ($(image_size "$image:$version"))"
}

build_service() {
  case "$MICROFLACK_RUNTIME" in
    native) build_release "$1" ;;
    docker) build_image "$1" ;;
  esac
}

# build_targets TARGET...: the builds asked for (common, all or services),
# every tag checked before anything is built; the shared wheel first.
build_targets() {
  local targets=() target name problem common_built=
  for target in "$@"; do
    case "$target" in
      all)
        targets+=(common)
        for name in $SERVICES; do targets+=("$name"); done
        ;;
      common) targets+=(common) ;;
      *) check_service "$target"; targets+=("$target") ;;
    esac
  done

  # A tag becomes part of every instance name: each is checked before
  # anything is built (a VERSION file may break the rule too).
  for target in "${targets[@]}"; do
    if [ "$target" != common ] && ! problem="$(name_problem tag "$(build_tag "$target")")"; then
      die "$target: $problem"
    fi
  done

  common_built=
  for target in "${targets[@]}"; do
    if [ "$target" = common ] || [ -z "$common_built" ]; then
      build_common
      common_built=1
    fi
    [ "$target" = common ] || build_service "$target"
  done
}
