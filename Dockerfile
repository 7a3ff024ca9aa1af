# The driftline image: `driftline serve` by default; every subcommand works (docker-compose.yml also
# runs `driftline simulate` from it as the traffic generator and to write the demo reference file).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    NUMBA_CACHE_DIR=/var/cache/driftline/numba

WORKDIR /app

# Dependencies first (a layer that survives source edits): install the project once from a stub.
COPY pyproject.toml README.md ./
RUN mkdir -p src/driftline && touch src/driftline/__init__.py \
 && pip install . \
 && rm -rf src

# Then the code itself.
COPY src ./src
RUN pip install --no-deps --force-reinstall . \
 && useradd --system --uid 10001 --home-dir /var/lib/driftline driftline \
 && mkdir -p /var/lib/driftline /var/cache/driftline/numba /refs \
 && chown -R driftline /var/lib/driftline /var/cache/driftline /refs

USER driftline
WORKDIR /var/lib/driftline
EXPOSE 8000
CMD ["driftline", "serve"]
