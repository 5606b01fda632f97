# One image for every role in docker-compose.yml: Ray head, Ray workers and the sweep driver.
FROM python:3.11-slim
WORKDIR /app
# CPU torch from PyTorch's CPU index first, so the project's torch>=2.4 doesn't pull CUDA.
# For GPU workers, build with --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu124
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
RUN pip install --no-cache-dir torch --index-url ${TORCH_INDEX}
COPY pyproject.toml README.md ./
COPY robustness ./robustness
COPY search_spaces ./search_spaces
RUN pip install --no-cache-dir '.[postgres]'
ENV RAY_USAGE_STATS_ENABLED=0
