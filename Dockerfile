# One replica per container: `python -m server`, as an unprivileged user.
# docker-compose.prod.yml runs three of these behind Nginx.

# The demo page's browser client, installed from npm at the pinned version.
FROM node:20-bookworm-slim AS demo-client
WORKDIR /client_demo
COPY client_demo/package.json client_demo/package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error

FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOST=0.0.0.0 \
    PORT=8000

WORKDIR /app
COPY requirements.txt .
RUN pip install --no-compile -r requirements.txt \
 && useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin kindmap

COPY kindmap_realtime/ kindmap_realtime/
COPY server/ server/
COPY client_demo/ client_demo/
COPY --from=demo-client /client_demo/node_modules/socket.io-client/dist client_demo/node_modules/socket.io-client/dist

USER kindmap
EXPOSE 8000
# `docker stop` sends SIGTERM, which drains: clients reconnect elsewhere, presence is withdrawn.
CMD ["python", "-m", "server"]
