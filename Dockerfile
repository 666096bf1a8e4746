# zonewarden appliance: the web API and a listen-only sensor on a SPAN/mirror interface.
#
#   docker build -t zonewarden .
#   docker run -d --name zonewarden --network host -v zonewarden-data:/var/lib/zonewarden \
#       zonewarden serve --host 0.0.0.0 --port 8000 --db /var/lib/zonewarden/zonewarden.db --sniff eth1
#   docker exec zonewarden zonewarden tokens create --role admin --db /var/lib/zonewarden/zonewarden.db
#
# Capture needs CAP_NET_RAW (packet socket) and CAP_NET_ADMIN (promiscuous mode). They are file
# capabilities of the Python interpreter, so the unprivileged user holds them without root; a runtime that
# drops them by default needs `--cap-add NET_RAW --cap-add NET_ADMIN`. The API alone (no --sniff) needs
# neither. Nothing else runs as root.
FROM python:3.11-slim

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends tshark libpcap0.8 libcap2-bin \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/zonewarden
COPY pyproject.toml README.md LICENSE ./
COPY sensor ./sensor
COPY policy ./policy
COPY api ./api
COPY rules ./rules

# tests/e2e/test_serve_dockerfile.py runs this line's pip install in a fresh virtualenv.
RUN python -m venv /opt/venv && /opt/venv/bin/pip install --no-cache-dir /opt/zonewarden

RUN setcap cap_net_raw,cap_net_admin+eip "$(readlink -f /opt/venv/bin/python)" \
 && useradd --system --uid 10001 --home-dir /var/lib/zonewarden --shell /usr/sbin/nologin zonewarden \
 && mkdir -p /var/lib/zonewarden && chown zonewarden:zonewarden /var/lib/zonewarden && chmod 0700 /var/lib/zonewarden

ENV PATH=/opt/venv/bin:$PATH ZONEWARDEN_DATA=/var/lib/zonewarden PYTHONUNBUFFERED=1
VOLUME ["/var/lib/zonewarden"]
USER zonewarden
EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["/opt/venv/bin/python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4).status != 200)"]

CMD ["/opt/venv/bin/zonewarden", "serve", "--host", "0.0.0.0", "--port", "8000", "--db", "/var/lib/zonewarden/zonewarden.db"]
