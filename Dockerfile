# One image for the gateway and the workers: `rpcfleet gateway` or `rpcfleet worker MODULE:POOL`.
# The example pool is source in /app/examples, not an installed package: workers import it with
# --app-dir /app (numpy comes with the `examples` extra; psycopg, for a shared job store, with
# `postgres`).
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY protocol ./protocol
COPY transport ./transport
COPY gateway ./gateway
COPY workers ./workers
COPY rpcfleet ./rpcfleet
COPY examples ./examples
RUN pip install ".[examples,postgres]" && useradd --create-home --uid 10001 rpcfleet \
    && mkdir -p /var/lib/rpcfleet && chown rpcfleet /var/lib/rpcfleet
USER rpcfleet
EXPOSE 8000
CMD ["rpcfleet", "--help"]
