# Image for the llmflow gateway and worker (docker-compose.temporal.yml builds it).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY api ./api
COPY activities ./activities
COPY core ./core
COPY worker ./worker
COPY workflow_defs ./workflow_defs
COPY prompts ./prompts
# Editable install keeps workflow_defs/*.json and prompts/ where the code expects them.
RUN pip install --no-cache-dir -e . && useradd --create-home llmflow && chown -R llmflow /app
USER llmflow
EXPOSE 8000
CMD ["llmflow", "api", "--host", "0.0.0.0"]
