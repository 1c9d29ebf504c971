# One image for the Python parts: the API (python -m services.api) and the simulated agent
# workload (python -m services.agent). Build context: the repository root.

FROM python:3.11.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
# Dependencies first (cached while only source changes).
COPY pyproject.toml README.md ./
COPY otel ./otel
COPY services ./services
RUN pip install . && useradd --uid 10001 --no-create-home cugar
COPY docs ./docs
USER 10001
EXPOSE 8000
CMD ["python", "-m", "services.api", "--host", "0.0.0.0", "--port", "8000"]
