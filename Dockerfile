# One image for every role in docker-compose.yml: Ray head, Ray workers, the sweep driver and the dashboard.
FROM python:3.11.11-slim-bookworm
WORKDIR /app
# torch first, pinned, from the index that matches the node: CPU by default, a CUDA build for
# GPU workers (docker-compose.yml passes TORCH_INDEX); then the project's torch>=2.4 pulls nothing.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG TORCH_VERSION=2.13.0
RUN pip install --no-cache-dir "torch==${TORCH_VERSION}" --index-url ${TORCH_INDEX}
COPY pyproject.toml README.md ./
COPY robustness ./robustness
COPY search_spaces ./search_spaces
COPY dashboards ./dashboards
# cluster: the head's job server for robustness submit; dashboard: gunicorn for the dashboard service
RUN pip install --no-cache-dir '.[postgres,cluster,dashboard]'
ENV RAY_USAGE_STATS_ENABLED=0
