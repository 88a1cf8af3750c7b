# shellcheck shell=bash
# The Docker images of the services (Docker runtime). Source after
# common.sh.
#   microflack_<service>:<version>  a service's image (and :latest)
#   microflack_wheels:<service>     the wheels its image installs, taken
#                                   from the host's wheelhouse
#   microflack_venv:<service>       the build stage that installed them,
#                                   kept so that a rebuild with the same
#                                   requirements does not install again
#   microflack_base:bookworm        the local base image for hosts that
#                                   cannot pull the official Python image

# The official base image: Python 3.11, like the wheels built on the host.
# shellcheck disable=SC2034 # used by the scripts that source this file
OFFICIAL_BASE_IMAGE="python:3.11-slim"
DEBIAN_SUITE="bookworm"
LOCAL_BASE_IMAGE="${LOCAL_BASE_IMAGE:-microflack_base:$DEBIAN_SUITE}"

# Image names start with MF_IMAGE_PREFIX (microflack_ by default; a test
# platform uses its own beside a real installation).
image_name() { printf '%s%s\n' "$MF_IMAGE_PREFIX" "$1"; }

wheels_image() { printf '%swheels:%s\n' "$MF_IMAGE_PREFIX" "$1"; }

venv_image() { printf '%svenv:%s\n' "$MF_IMAGE_PREFIX" "$1"; }

# image_tags SERVICE: the versions of a service's images, oldest first.
image_tags() {
  docker image ls --format '{{.Tag}}' "$(image_name "$1")" 2>/dev/null |
    grep -vx -e latest -e '<none>' | sort -uV
}

# image_size IMAGE: its size in MB, as `docker image ls` counts it.
image_size() {
  local bytes
  bytes="$(docker image inspect --format '{{.Size}}' "$1")"
  printf '%s MB\n' "$(( (bytes + 500000) / 1000000 ))"
}

# image_label IMAGE LABEL: one label of an image (empty if none).
image_label() {
  docker image inspect --format "{{ index .Config.Labels \"$2\" }}" "$1" \
    2>/dev/null || true
}

# need_docker: die unless a Docker engine answers.
need_docker() {
  need_cmd docker
  docker info >/dev/null 2>&1 ||
    die "no Docker engine answers: run microflack_admin/install/start-docker.sh"
}
