#!/usr/bin/env python3
"""Record what RabbitMQ 3.10's management and Prometheus plugins answer, as fixtures for
coney's HTTP unit tests (tests/fixtures/rabbitmq-3.10-http/).

    RABBITMQ_PLUGINS="rabbitmq_management rabbitmq_prometheus" \\
        scripts/rabbitmq.sh start 5694 /tmp/rmq-http
    scripts/pyenv.sh
    .venv/pika1/bin/python scripts/record-http-fixtures.py /tmp/rmq-http
    scripts/rabbitmq.sh stop /tmp/rmq-http

The node must be fresh (the script creates users, a vhost and queues, and its outputs
depend on exactly those). pika keeps one connection with a consumer open while the metrics
are read, so connection, channel and consumer families appear.

Writes:
  responses.txt        status line, the headers that matter and the body of each case
  routes.tsv           every 3.10 management path pattern: the Allow header a PATCH gets,
                       and the status of an unauthenticated GET (401 = a real route)
  pagination.txt       listing queries over the recorded queue set and their JSON bodies
  metrics.txt          GET /metrics (aggregated)
  metrics-per-object.txt  GET /metrics/per-object
"""
import base64
import http.client
import os
import re
import socket
import subprocess
import sys
import time

import pika

DIR = sys.argv[1]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "rabbitmq-3.10-http")
AMQP = int(open(os.path.join(DIR, "amqp.port")).read())
MGMT = int(open(os.path.join(DIR, "mgmt.port")).read())
PROM = int(open(os.path.join(DIR, "prometheus.port")).read())
KEEP = ("allow", "content-type", "www-authenticate", "connection", "cache-control",
        "content-length", "transfer-encoding")


def ctl(*args):
    subprocess.run([os.path.join(ROOT, "scripts", "rabbitmq.sh"), "ctl", DIR, *args],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def basic(user, pw):
    return "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()


GUEST = {"Authorization": basic("guest", "guest")}


def request(method, path, headers=None, body=None, port=MGMT):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r, data


def raw(data, port=MGMT, wait=8.0):
    """Raw bytes in, raw bytes out; the server closes (or `wait` passes)."""
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(wait)
    s.sendall(data)
    out = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    except socket.timeout:
        pass
    s.close()
    return out


def setup():
    ctl("add_user", "notag", "pw")
    ctl("add_user", "mon", "pw")
    ctl("set_user_tags", "mon", "monitoring")
    ctl("add_user", "mgmt", "pw")
    ctl("set_user_tags", "mgmt", "management")
    ctl("set_permissions", "-p", "/", "mgmt", ".*", ".*", ".*")
    for i in range(1, 13):
        body = '{"durable":%s,"arguments":{"x-max-length":%d}}' % (
            "true" if i % 2 == 0 else "false", i)
        request("PUT", f"/api/queues/%2F/work.{i}",
                {**GUEST, "content-type": "application/json"}, body)
    request("PUT", "/api/queues/%2F/other", {**GUEST, "content-type": "application/json"}, "{}")
    request("PUT", "/api/vhosts/v%2F2", GUEST)
    request("PUT", "/api/queues/v%2F2/a%20b%2Fc", {**GUEST, "content-type": "application/json"},
            "{}")


CASES = [
    # name, method, path, headers, body
    ("unknown-path", "GET", "/api/nope", {}, None),
    ("unknown-path-authenticated", "GET", "/api/nope", GUEST, None),
    ("unknown-path-patch", "PATCH", "/api/nope", {}, None),
    ("unknown-path-slash-in-segment", "GET", "/api/nope%2Fx", {}, None),
    ("unknown-queue", "GET", "/api/queues/%2F/nope", GUEST, None),
    ("unknown-vhost", "GET", "/api/queues/nope", GUEST, None),
    ("unknown-queue-no-auth", "GET", "/api/queues/%2F/nope", {}, None),
    ("missing-auth", "GET", "/api/overview", {}, None),
    ("wrong-password", "GET", "/api/overview", {"Authorization": basic("guest", "bad")}, None),
    ("unknown-user", "GET", "/api/overview", {"Authorization": basic("nobody", "pw")}, None),
    ("bearer-scheme", "GET", "/api/whoami", {"Authorization": "Bearer abc"}, None),
    ("basic-bad-base64", "GET", "/api/whoami", {"Authorization": "Basic !!!"}, None),
    ("basic-no-colon", "GET", "/api/whoami",
     {"Authorization": "Basic " + base64.b64encode(b"nocolon").decode()}, None),
    ("basic-lowercase-scheme", "GET", "/api/whoami",
     {"Authorization": "basic " + base64.b64encode(b"guest:guest").decode()}, None),
    ("no-management-tag", "GET", "/api/overview", {"Authorization": basic("notag", "pw")}, None),
    ("management-needs-administrator", "GET", "/api/users",
     {"Authorization": basic("mgmt", "pw")}, None),
    ("management-needs-monitoring", "GET", "/api/nodes", {"Authorization": basic("mgmt", "pw")},
     None),
    ("monitoring-needs-administrator", "GET", "/api/users",
     {"Authorization": basic("mon", "pw")}, None),
    ("management-needs-policymaker", "PUT", "/api/policies/%2F/p",
     {"Authorization": basic("mgmt", "pw"), "content-type": "application/json"}, "{}"),
    ("whoami", "GET", "/api/whoami", GUEST, None),
    ("whoami-head", "HEAD", "/api/whoami", GUEST, None),
    ("whoami-accept-html", "GET", "/api/whoami", {**GUEST, "Accept": "text/html"}, None),
    ("bad-json-body", "PUT", "/api/queues/%2F/q1", {**GUEST, "content-type": "application/json"},
     "{bad"),
    ("method-not-allowed", "POST", "/api/overview", GUEST, ""),
    ("method-not-allowed-no-auth", "POST", "/api/overview", {}, ""),
    ("method-not-allowed-queue", "PATCH", "/api/queues/%2F/q1", GUEST, None),
    ("unknown-method", "FOO", "/api/overview", GUEST, None),
    ("options", "OPTIONS", "/api/queues", {}, None),
    ("queue-created", "PUT", "/api/queues/%2F/created",
     {**GUEST, "content-type": "application/json"}, "{}"),
    ("queue-exists", "PUT", "/api/queues/%2F/created",
     {**GUEST, "content-type": "application/json"}, "{}"),
    ("queue-deleted", "DELETE", "/api/queues/%2F/created", GUEST, None),
    ("queue-delete-missing", "DELETE", "/api/queues/%2F/created", GUEST, None),
    ("page-out-of-range", "GET", "/api/queues?page=4&page_size=5&columns=name", GUEST, None),
    ("page-zero", "GET", "/api/queues?page=0&page_size=5", GUEST, None),
    ("page-size-too-big", "GET", "/api/queues?page=1&page_size=501", GUEST, None),
    ("page-not-a-number", "GET", "/api/queues?page=x", GUEST, None),
    ("page-negative-no-size", "GET", "/api/queues?page=-1", GUEST, None),
    ("bad-regex", "GET", "/api/queues?page=1&use_regex=true&name=(", GUEST, None),
    ("sort-reverse-not-boolean", "GET", "/api/queues?sort_reverse=1", GUEST, None),
    ("bad-percent-in-path", "GET", "/api/queues/%2F/%zz", GUEST, None),
    ("bindings-bad-destination-type", "GET", "/api/bindings/%2F/e/amq.direct/x/y", GUEST, None),
    ("trailing-slash", "GET", "/api/whoami/", GUEST, None),
]

RAW_CASES = [
    ("raw-garbage", b"GARBAGE\r\n\r\n"),
    ("raw-http-2.0", b"GET /api/overview HTTP/2.0\r\nHost: x\r\n\r\n"),
    ("raw-http-1.0-no-host", b"GET /api/overview HTTP/1.0\r\n\r\n"),
    ("raw-http-1.1-no-host", b"GET /api/overview HTTP/1.1\r\n\r\n"),
    ("raw-request-line-too-long", b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("raw-header-value-too-long", b"GET /api/x HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 5000 +
     b"\r\n\r\n"),
    ("raw-too-many-headers", b"GET /api/x HTTP/1.1\r\nHost: x\r\n" +
     b"".join(b"X-%d: a\r\n" % i for i in range(120)) + b"\r\n"),
    ("raw-pipelined-close", b"GET /api/whoami HTTP/1.1\r\nHost: x\r\nAuthorization: " +
     GUEST["Authorization"].encode() + b"\r\n\r\nGET /api/nope HTTP/1.1\r\nHost: x\r\n\r\n"
     b"GET /api/whoami HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: " +
     GUEST["Authorization"].encode() + b"\r\n\r\n"),
    ("raw-transfer-encoding-gzip", b"PUT /api/queues/%2F/q HTTP/1.1\r\nHost: x\r\n"
     b"Transfer-Encoding: gzip\r\n\r\n"),
    ("raw-expect-unknown", b"PUT /api/queues/%2F/q HTTP/1.1\r\nHost: x\r\nExpect: foo\r\n"
     b"Content-Length: 0\r\nConnection: close\r\n\r\n"),
    ("raw-chunked-request-body", b"PUT /api/queues/%2F/chunky HTTP/1.1\r\nHost: x\r\n"
     b"Authorization: " + GUEST["Authorization"].encode() + b"\r\nContent-Type: application/json"
     b"\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\n{\"dur\r\n"
     b"b\r\nable\":true}\r\n0\r\n\r\n"),
    ("raw-partial-head-times-out", b"GET /api/overview HTTP/1.1\r\nHost: x\r\n"),
]


def strip(resp_bytes):
    """Keeps the status line, the headers in KEEP and the body, for each response."""
    out = []
    for part in re.split(rb"(?=HTTP/1\.1 \d{3})", resp_bytes):
        if not part:
            continue
        head, _, body = part.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        out.append("< " + lines[0].decode())
        for h in lines[1:]:
            name = h.split(b":", 1)[0].decode().lower()
            if name in KEEP:
                out.append("< " + h.decode())
        out.append(body.decode("latin1"))
    return "\n".join(out)


def record_responses():
    lines = []
    for name, method, path, headers, body in CASES:
        r, data = request(method, path, headers, body)
        lines.append(f"=== {name}")
        lines.append(f"> {method} {path}")
        for k, v in headers.items():
            lines.append(f"> {k}: {v}")
        if body is not None:
            lines.append(f"> body: {body}")
        lines.append(f"< {r.status} {r.reason}")
        for k, v in r.getheaders():
            if k.lower() in KEEP:
                lines.append(f"< {k.lower()}: {v}")
        lines.append(data.decode())
    for name, data in RAW_CASES:
        t0 = time.time()
        got = raw(data)
        lines.append(f"=== {name}")
        lines.append(f"> raw {data[:120]!r}{' ...' if len(data) > 120 else ''}")
        lines.append(strip(got))
        if name == "raw-partial-head-times-out":
            lines.append(f"(closed after about {round(time.time() - t0)} s)")
    with open(os.path.join(OUT, "responses.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


ROUTES = open(os.path.join(ROOT, "scripts", "http-route-patterns.txt")).read().split()


def record_routes():
    rows = ["# pattern\tpath\tPATCH status\tallow\tGET status without auth"]
    for p in ROUTES:
        path = p
        for k, v in {"{vhost}": "%2F", "{within}": "1", "{unit}": "days", "{port}": str(AMQP),
                     "{protocol}": "amqp"}.items():
            path = path.replace(k, v)
        path = re.sub(r"\{[a-z]+\}", "x", path)
        r, _ = request("PATCH", path, GUEST)
        r2, _ = request("GET", path)
        rows.append(f"{p}\t{path}\t{r.status}\t{r.getheader('allow') or '-'}\t{r2.status}")
    with open(os.path.join(OUT, "routes.tsv"), "w") as f:
        f.write("\n".join(rows) + "\n")


QUERIES = [
    "columns=name,vhost,durable,arguments",
    "columns=name,vhost",
    "columns=vhost,name&page=1&page_size=3",
    "page=3&page_size=5&columns=name",
    "page=1&page_size=500&columns=name",
    "page_size=5&columns=name",
    "page=1&columns=name",
    "page=01&page_size=2&columns=name",
    "name=work.1&page=1&columns=name",
    "name=WORK&page=1&columns=name",
    "name=a+b&page=1&columns=name",
    "name=%25&page=1&columns=name",
    "name=work.1&columns=name",
    "name=zzz&page=1&columns=name",
    "name=^work.1$&use_regex=true&page=1&columns=name",
    "name=^WORK.1$&use_regex=true&page=1&columns=name",
    "name=^work.1$&use_regex=TRUE&page=1&columns=name",
    "name=work&use_regex=true&page=2&page_size=5&columns=name",
    "sort=name&sort_reverse=true&columns=name",
    "sort=name&sort_reverse=false&columns=name",
    "sort=durable&columns=name,durable",
    "sort=arguments.x-max-length&columns=name,arguments.x-max-length&page=1&page_size=20",
    "sort=arguments&sort_reverse=true&columns=name,arguments&page=1&page_size=3",
    "sort=nope&columns=name&page=1&page_size=4",
    "columns=nope,name",
    "columns=&page=1&page_size=1",
    "columns=name,name&page=1&page_size=2",
    "page=1&page=2&page_size=2&columns=name",
]


def record_pagination():
    lines = []
    for q in QUERIES:
        r, data = request("GET", "/api/queues?" + q, GUEST)
        lines.append(f"> /api/queues?{q}")
        lines.append(f"< {r.status}")
        lines.append(data.decode())
    for path in ["/api/vhosts?page=1&page_size=2&columns=name",
                 "/api/connections?page=1&page_size=2&columns=name",
                 "/api/users?page=1&page_size=2&columns=name"]:
        r, data = request("GET", path, GUEST)
        lines.append(f"> {path}")
        lines.append(f"< {r.status}")
        lines.append(data.decode())
    with open(os.path.join(OUT, "pagination.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


def record_metrics():
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", AMQP))
    ch = conn.channel()
    ch.confirm_delivery()
    ch.basic_publish("", "other", b"hello")
    ch.basic_publish("", "work.12", b"hello")
    ch.basic_consume("work.12", lambda *a: None, auto_ack=False)
    conn.process_data_events(time_limit=1)
    # rabbitmq_prometheus reads the management agent's stats, refreshed every 5 s.
    time.sleep(6)
    for path, name in [("/metrics", "metrics.txt"), ("/metrics/per-object", "metrics-per-object.txt")]:
        r, data = request("GET", path, port=PROM)
        assert r.status == 200, (path, r.status)
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
    r, data = request("GET", "/metrics", {"Accept-Encoding": "identity"}, port=PROM)
    with open(os.path.join(OUT, "metrics-headers.txt"), "w") as f:
        f.write(f"< {r.status} {r.reason}\n")
        for k, v in r.getheaders():
            if k.lower() in KEEP:
                f.write(f"< {k.lower()}: {v}\n")
    conn.close()


os.makedirs(OUT, exist_ok=True)
setup()
record_routes()
record_pagination()
record_responses()
record_metrics()
print("fixtures written to", OUT)
