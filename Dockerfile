# The ptc-mcp server image: `ptc-mcp serve` over streamable HTTP, non-root, configured by env and a mounted config.
#
#   docker build -t ptc-mcp:0.1 .
#   docker run -p 8000:8000 -v $PWD/config.json:/etc/ptc-mcp/config.json:ro -e PTC_MCP_AUTH_TOKEN=... ptc-mcp:0.1
#
# Build args:
#   BASE_IMAGE  any image with python3 >= 3.11 (default python:3.12-slim). CI builds from ptc-mcp-sandbox:local,
#               an image made from the build machine's own Python (no registry needed); it has no pip, so CI puts
#               the packages, already installed, in build/image-packages/ (and the native libraries they need
#               that such a bare base lacks, like libgcc_s, in build/image-native/) and install.py copies them.
#   EXTRAS      the extras to install with pip (default agentcore,docker: AgentCore sandboxes from Fargate,
#               sibling containers through a mounted docker socket on EC2).
#
# Sandboxes: the image holds no bubblewrap, so run programs through `agentcore` or `docker` (docs/deploy.md).
# Every RUN is in exec form: the base needs no shell.
ARG BASE_IMAGE=python:3.12-slim

FROM ${BASE_IMAGE} AS build
ARG EXTRAS=agentcore,docker
# Some bases (ptc-mcp-sandbox:local) default to an unprivileged user; installing into /opt needs root here only.
USER 0:0
COPY . /src
RUN ["python3", "/src/deploy/image/install.py", "/src", "/opt/ptc-mcp"]

FROM ${BASE_IMAGE}
COPY --from=build /opt/ptc-mcp /opt/ptc-mcp
COPY deploy/image/config.json /etc/ptc-mcp/config.json
ENV PYTHONPATH=/opt/ptc-mcp/lib \
    LD_LIBRARY_PATH=/opt/ptc-mcp/native \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    LANG=C.UTF-8 \
    PTC_MCP_CONFIG=/etc/ptc-mcp/config.json \
    PTC_MCP_TRANSPORT=http \
    PTC_MCP_HOST=0.0.0.0 \
    PTC_MCP_PORT=8000 \
    PTC_MCP_JSON_LOGS=1
# 65534 is `nobody` in Debian-based images and in ptc-mcp-sandbox:local; it owns nothing in the image.
USER 65534:65534
WORKDIR /tmp
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python3", "-c", "import sys, urllib.request as u; sys.exit(u.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status != 200)"]
ENTRYPOINT ["python3", "-m", "ptc_mcp"]
CMD ["serve"]
