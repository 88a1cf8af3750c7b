# The image of a MicroFlack service: every service folder's Dockerfile is a
# link to this one. Built by the service's build.sh (or mfbuild) from the
# service folder, with:
#   SERVICE       the service's name (ui, users, tokens, messages, socketio)
#   BASE_IMAGE    a Debian-based image with python3 and its venv module: the
#                 official Python image, or microflack_base:bookworm made by
#                 microflack_admin/install/make-base-image.sh
#   WHEELS_IMAGE  holds in /wheels every wheel requirements.txt needs, taken
#                 from the host's wheelhouse: nothing is downloaded here
ARG BASE_IMAGE=python:3.11-slim
ARG WHEELS_IMAGE
FROM ${WHEELS_IMAGE} AS wheels

FROM ${BASE_IMAGE} AS venv
# Marks what mfbuild prunes once the image is built.
LABEL org.microflack.stage=build
COPY --from=wheels /wheels /tmp/wheels
COPY requirements.txt /tmp/requirements.txt
RUN python3 -m venv /venv \
 && /venv/bin/pip install --quiet --no-cache-dir --disable-pip-version-check \
      --no-index --find-links /tmp/wheels -r /tmp/requirements.txt \
 && /venv/bin/pip uninstall --quiet --yes pip

FROM ${BASE_IMAGE}
ARG SERVICE
# The app `flask` loads (mfbuild gives app.py for a build from before the
# service packages).
ARG FLASK_APP=microflack_${SERVICE}.app
# The app runs as this user; its files belong to root, read-only to it.
RUN echo 'microflack:x:10001:10001:MicroFlack:/app:/usr/sbin/nologin' >> /etc/passwd \
 && echo 'microflack:x:10001:' >> /etc/group
COPY --from=venv /venv /venv
COPY . /app
WORKDIR /app
ENV PATH=/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 LANG=C.UTF-8 \
    FLASK_APP=${FLASK_APP} FLASK_CONFIG=prod SERVICE_NAME=${SERVICE}
# No setuid or setgid program left to raise a process's privileges (the
# container also runs with no-new-privileges and no capabilities: mfrun).
RUN python3 -m compileall -q /app \
 && find / -xdev -type f -perm /6000 -exec chmod ug-s {} +
# The image reads its secrets from the file SECRETS_FILE names (mfrun
# mounts it read-only) instead of its environment.
LABEL app=microflack service=${SERVICE} org.microflack.secrets-file=1
USER 10001:10001
# Named so that Docker tells a stop (this signal, or SIGKILL) from any
# other `docker kill`, after which the restart policy applies.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=5s --timeout=4s --start-period=60s --retries=3 \
  CMD ["python3", "-m", "microflack_common.healthcheck"]
CMD ["./boot.sh"]
