# shadowd container: the wheel on a slim Python base, run as an unprivileged user.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md alembic.ini ./
COPY shadowd ./shadowd
COPY migrations ./migrations
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /app shadowd
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER 10001
WORKDIR /app
ENV SHADOWD_LOG_FORMAT=json PYTHONUNBUFFERED=1
EXPOSE 8080
# SIGTERM drains in-flight replays (see --drain-timeout) before committing and exiting.
STOPSIGNAL SIGTERM
ENTRYPOINT ["shadowd"]
CMD ["run", "--http", "0.0.0.0:8080", "-c", "/etc/shadowd/shadowd.yaml"]
