# HeadRank's HTTP service (Cohere / Jina / TEI rerank routes, /health, /metrics, the playground) in one image.
#   docker build -t headrank .                                  # the default preset, CPU
#   docker build --build-arg PRESET=headrank-smollm2-135m -t headrank-small .
#   docker run -p 8000:8000 -e HEADRANK_API_KEY=... headrank
# For a GPU image, start FROM an image with CUDA and pass --build-arg TORCH_SPEC=<a CUDA torch build>, then
# run with --gpus all and add "--device", "cuda" to the command. Every RUN below is exercised by
# tests/test_deploy.py (the same install steps in a fresh virtual environment, the same fetch, the same serve).
FROM python:3.12-slim
ARG PRESET=headrank-qwen2.5-coder-0.5b
ARG TORCH_SPEC=torch==2.13.0
ENV HEADRANK_HOME=/var/cache/headrank PYTHONUNBUFFERED=1 PRESET=${PRESET}
WORKDIR /opt/headrank
COPY pyproject.toml README.md ./
COPY src ./src
COPY deploy/install.sh ./deploy/install.sh
RUN TORCH_SPEC="${TORCH_SPEC}" sh deploy/install.sh
RUN headrank presets --fetch "${PRESET}"
# The model is in the image: the service runs unprivileged and never fetches at run time.
ENV HEADRANK_OFFLINE=1
USER nobody
EXPOSE 8000
# exec form through sh so that ${PRESET} expands; exec hands SIGTERM to headrank, which drains in-flight requests
CMD ["sh", "-c", "exec headrank serve --model \"${PRESET}\" --host 0.0.0.0 --port 8000"]
