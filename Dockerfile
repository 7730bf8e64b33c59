# AMOS service image: `python main.py run` and its tools (check, diagnose); no lab, no tests, no demo.
#
#   docker build -t amos:0.1.0 .
#   docker run --rm amos:0.1.0 --version
#
# The base is pinned to a full Python release on a fixed Debian release. Pin it further by digest where you
# build (docker buildx imagetools inspect python:3.11.14-slim-bookworm) and write it as
# python:3.11.14-slim-bookworm@sha256:<digest>.
# Dependencies come only from requirements.lock (exact versions and sha256 hashes, resolved for CPython 3.11 on
# manylinux x86_64; regenerate it as its header says).
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS dependencies
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY requirements.lock /tmp/requirements.lock
RUN python -m venv /opt/amos \
 && /opt/amos/bin/pip install --no-deps --require-hashes --only-binary=:all: -r /tmp/requirements.lock

FROM ${PYTHON_IMAGE}
ENV PATH=/opt/amos/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    AMOS_LOG_JSON=true
COPY --from=dependencies /opt/amos /opt/amos
WORKDIR /app
# Exactly what `main.py run|check|diagnose` imports (scenarios/ and lab/ stay in the repository).
# pyproject.toml: `--version` reads the release from it (AMOS itself is not pip-installed).
COPY pyproject.toml main.py ./
COPY core ./core
COPY monitors ./monitors
COPY tools ./tools
COPY agents ./agents
COPY prompts ./prompts
COPY orchestrator ./orchestrator
COPY notifications ./notifications
COPY service ./service
# Smoke test of the build: every module `run`, `check` and `diagnose` load imports, and the CLI answers.
# `check` itself needs a cluster: run it from the image against yours (docker run ... amos check), or see the
# pod's first log lines, since `run` performs the same checks and refuses to start on a fatal one.
RUN python -m compileall -q /app \
 && python -c "import service.app, service.check, service.oneshot" \
 && python main.py --version
# A numeric non-root user, so runAsNonRoot can verify it without a passwd entry.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["python", "main.py"]
CMD ["run"]
