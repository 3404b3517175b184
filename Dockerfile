# The leadflow worker image: `docker build -t leadflow .`, then `docker run leadflow worker ...`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY lifecycle ./lifecycle
COPY streams ./streams
COPY schemas ./schemas
COPY sinks ./sinks
COPY leadflow ./leadflow
RUN pip install . \
    && useradd --create-home --uid 10001 --shell /usr/sbin/nologin leadflow \
    && mkdir -p /var/lib/leadflow \
    && chown leadflow:leadflow /var/lib/leadflow

USER leadflow
EXPOSE 6066

# The worker's HTTP health check; other commands (topics create, produce) run without one.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=6 \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:6066/health', timeout=3).status == 200 else 1)"

ENTRYPOINT ["leadflow"]
CMD ["worker", "--web-port", "6066", "--data-dir", "/var/lib/leadflow"]
