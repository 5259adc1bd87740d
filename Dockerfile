# api-worker's own image: the supervisor under dumb-init, as a non-root user.
#
#   docker build -t api-worker .
#   docker run -d -e AWS_DEFAULT_REGION=eu-west-1 -e API_WORKER_QUEUE=https://sqs... \
#     --user "$(id -u):$(id -g)" --group-add "$(stat -c %g /var/run/docker.sock)" \
#     -v /var/run/docker.sock:/var/run/docker.sock -v "$HOME:$HOME" \
#     api-worker --scratch-dir "$HOME/api-worker/scratch" --journal "$HOME/api-worker/journal.sqlite3" \
#     --workers 8 docker
#
# BASE: any image with Python 3.11 or later and `python3 -m venv` (a mirror of python:3.11-slim,
# or one made locally); pip in it installs the pinned requirements from its configured index.
ARG BASE=python:3.11-slim
FROM ${BASE}

# Its venv and supervisor.py on PATH: `docker exec CONTAINER supervisor.py status` works as written.
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    XDG_STATE_HOME=/var/lib \
    PATH=/opt/api-worker/.venv/bin:/opt/api-worker:$PATH
WORKDIR /opt/api-worker
COPY requirements.txt ./
RUN python3 -m venv .venv \
    && .venv/bin/pip install --no-cache-dir --disable-pip-version-check -r requirements.txt
COPY supervisor.py ./
COPY assembly ./assembly
COPY client ./client
COPY common ./common
COPY config ./config
COPY fleet ./fleet
COPY journal ./journal
COPY kit ./kit
COPY monitoring ./monitoring
COPY pool ./pool
COPY protocol ./protocol
COPY queues ./queues
COPY runners ./runners
COPY staging ./staging
COPY examples ./examples

# A dedicated user; its state (embedded queue, scratch) under /var/lib/api-worker by default.
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/api-worker --create-home api-worker
USER api-worker

# dumb-init is PID 1: it reaps orphaned processes and passes signals to the supervisor alone
# (--single-child), which then stops gracefully; its children must not get them directly.
ENTRYPOINT ["/opt/api-worker/.venv/bin/dumb-init", "--single-child", "--", \
            "/opt/api-worker/.venv/bin/python", "/opt/api-worker/supervisor.py"]
CMD ["--help"]
