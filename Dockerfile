# Worker image: one distribution, the `superintel` console script, production dependencies only
# (no `embedded` extra: the developer commands `stack`/`demo`/`venue` answer with what to install).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY execution ./execution
COPY adapters ./adapters
COPY streams ./streams
COPY agents ./agents
COPY replay ./replay
COPY venues ./venues
COPY devstack ./devstack
RUN pip install --no-cache-dir .
RUN useradd --system --uid 10001 superintel
USER superintel
ENTRYPOINT ["superintel"]
CMD ["worker", "-l", "info"]
