# syntax=docker/dockerfile:1
# responder in a container. Rules and templates are not baked in: mount them at /etc/responder.
#   docker build -t responder .
#   docker run -d --name responder -p 8080:8080 \
#     -v /srv/responder:/etc/responder:ro -e DINGTALK_APP_SECRET responder
# See docs/deployment.md.

# Build stage: install the package and its dependencies into a venv that the runtime stage copies.
FROM python:3.12-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN python -m venv /opt/responder
WORKDIR /src
# .dockerignore admits only what the wheel build needs (pyproject, README, responder/, schema/).
COPY . .
RUN /opt/responder/bin/pip install .

# Runtime stage: no compiler, no pip cache, no source tree, and not root.
FROM python:3.12-slim
# The venv's python symlinks to /usr/local/bin/python3.12, which is the same in both stages.
ENV PATH=/opt/responder/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1
# A numeric UID lets Kubernetes runAsNonRoot verify the user; the name is `responder`.
RUN groupadd --system --gid 10001 responder \
 && useradd --system --uid 10001 --gid responder --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin responder
COPY --from=build /opt/responder /opt/responder
USER 10001:10001
WORKDIR /etc/responder

# DINGTALK_APP_SECRET comes from `docker run -e`/`--env-file` at run time, never from the image.
# Callback listener. The admin listener (/-/healthy, /-/ready, /-/status, /metrics) stays on
# 127.0.0.1:9180 inside the container, which is where HEALTHCHECK runs, so it is not exposed.
EXPOSE 8080
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9180/-/healthy', timeout=3)"]

ENTRYPOINT ["responder"]
CMD ["serve", "--config", "/etc/responder/rules.yaml", "--host", "0.0.0.0", "--port", "8080", "--log-format", "json"]
