FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
RUN pip install --no-cache-dir .
COPY core ./core
COPY monitors ./monitors
COPY tools ./tools
COPY agents ./agents
COPY prompts ./prompts
COPY orchestrator ./orchestrator
COPY notifications ./notifications
COPY service ./service
COPY main.py ./
USER 65532:65532
ENTRYPOINT ["python", "main.py"]
CMD ["run"]
