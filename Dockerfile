# shadowd container: the wheel on a slim Python base, run as an unprivileged user. The base image is
# pinned by version (pin it by digest too in your registry mirror); every Python package is installed
# under the constraints of requirements/lock.txt, so the image holds the versions CI tested.
ARG PYTHON_IMAGE=python:3.11.9-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY requirements/lock.txt ./requirements/lock.txt
COPY pyproject.toml README.md alembic.ini ./
COPY shadowd ./shadowd
COPY migrations ./migrations
RUN pip wheel --no-cache-dir --constraint requirements/lock.txt --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
RUN useradd --system --uid 10001 --home-dir /app shadowd
COPY --from=build /src/requirements/lock.txt /tmp/lock.txt
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels --constraint /tmp/lock.txt shadowd \
    && rm -rf /wheels /tmp/lock.txt
USER 10001:10001
WORKDIR /app
ENV SHADOWD_LOG_FORMAT=json PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
EXPOSE 8080
# SIGTERM drains in-flight replays (see --drain-timeout) before committing and exiting.
STOPSIGNAL SIGTERM
ENTRYPOINT ["shadowd"]
CMD ["run", "--http", "0.0.0.0:8080", "-c", "/etc/shadowd/config/shadowd.yaml"]
