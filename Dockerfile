# callx image: the API, the Celery workers and the `migrate` one-shot all run from it.
#
#   docker build -t callx:latest .
#   docker run --rm callx:latest --help
#
# Two stages: the compilers (build-essential, cmake) live only in the builder, where
# llama-cpp-python is compiled from source; the runtime stage gets the finished virtualenv.

ARG PYTHON_IMAGE=python:3.11-slim

# --------------------------------------------------------------------------- builder
FROM ${PYTHON_IMAGE} AS builder

RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential cmake \
    && rm -rf /var/lib/apt/lists/*

# llama.cpp compile flags. GGML_NATIVE=OFF builds for a portable x86-64 baseline
# (AVX/AVX2/FMA/F16C) instead of the build host's exact CPU, so the image runs on other
# machines; pass --build-arg LLAMA_CMAKE_ARGS="-DGGML_NATIVE=ON" for a host-tuned build.
ARG LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF"
ENV CMAKE_ARGS="${LLAMA_CMAKE_ARGS}" \
    CMAKE_BUILD_PARALLEL_LEVEL=4 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
# The whole build context (trimmed by .dockerignore): a plain COPY that works whether or not
# constraints.txt exists.
COPY . .
RUN pip install --upgrade pip setuptools wheel \
    && if [ -f constraints.txt ]; then \
         pip install -c constraints.txt . ; \
       else \
         pip install . ; \
       fi \
    && callx --help >/dev/null

# --------------------------------------------------------------------------- runtime
FROM ${PYTHON_IMAGE} AS runtime

# libgomp1: llama.cpp's OpenMP runtime (the only native library the slim base lacks).
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 callx \
    && useradd --system --uid 10001 --gid callx --home-dir /var/lib/callx \
         --shell /usr/sbin/nologin callx \
    && mkdir -p /var/lib/callx/cache /var/lib/callx/data \
    && chown -R callx:callx /var/lib/callx

COPY --from=builder /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/var/lib/callx \
    CALLX_CACHE_DIR=/var/lib/callx/cache \
    CALLX_DATA_DIR=/var/lib/callx/data

# The working directory is where an optional .env is read from (mount one here if wanted).
WORKDIR /var/lib/callx
USER callx

EXPOSE 8000

# No HEALTHCHECK here: the same image runs workers, which serve no HTTP. docker-compose.yml
# checks the API on /readyz.
ENTRYPOINT ["callx"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000", "--no-worker"]
