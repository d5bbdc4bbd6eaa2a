"""The load `grafana/check` puts on a server, through its public API, so that every panel
and every rule has something to show: two tenants (a shop on `enterprise`, a tiny one on
`free` with small limits), products, customers, orders moved through every state and
cancelled, reads (single ones through the read cache, lists, GraphQL), realtime sessions
over all three transports (SSE, WebSocket with broadcasts, a GraphQL subscription), a
slow consumer, webhooks to a receiver that answers and to one that fails, quota
refusals and 80 %/100 % warnings, a rate-limited burst, login lock-outs, a burst of logins
the argon2 queue refuses, a burst the database admission limit refuses, a Redis outage
(a proxy in front of Redis, cut for a few seconds), a read-model rebuild, a change on a
second instance, a 404 and a 422.

Python's standard library only. Each helper below is small on purpose: a WebSocket client
of a few dozen lines, a TCP proxy, an HTTP receiver.
"""

import base64
import http.client
import http.server
import json
import os
import random
import socket
import struct
import subprocess
import threading
import time
import uuid
from collections import Counter

PASSWORD = "correct horse battery staple"


def log(message):
    print(f"   {message}", flush=True)


# --- HTTP -------------------------------------------------------------------------------


class Answer:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body) if self.body else None

    def __repr__(self):
        return f"{self.status} {self.body[:300]!r}"


class Client:
    """One keep-alive connection; requests retried on 503 and 429 (rate_limited, not
    quota_exceeded) after their Retry-After, as a well-behaved client does. Every status
    answered is counted in `statuses` (shared)."""

    def __init__(self, port, statuses, auth=None, retries=5):
        self.port, self.statuses, self.auth, self.retries = port, statuses, auth, retries
        self.connection = None

    def _send(self, method, path, body, headers):
        for attempt in range(2):
            if self.connection is None:
                self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            try:
                self.connection.request(method, path, body=body, headers=headers)
                response = self.connection.getresponse()
                data = response.read()
                if response.getheader("connection", "").lower() == "close":
                    self.close()
                return Answer(response.status, response.headers, data)
            except (http.client.HTTPException, OSError):
                self.close()
                if attempt == 1:
                    raise
        raise AssertionError("unreachable")

    def close(self):
        if self.connection is not None:
            self.connection.close()
            self.connection = None

    def call(self, method, path, payload=None, headers=None, retry=True, auth=None):
        headers = dict(headers or {})
        credential = auth if auth is not None else self.auth
        if credential:
            headers.setdefault("Authorization", f"Bearer {credential}")
        body = None
        if payload is not None:
            body = json.dumps(payload).encode()
            headers["Content-Type"] = "application/json"
        if method == "POST" and retry and "Idempotency-Key" not in headers and path.startswith("/v1/orders"):
            headers["Idempotency-Key"] = str(uuid.uuid4())
        for attempt in range(self.retries + 1):
            answer = self._send(method, path, body, headers)
            self.statuses[answer.status] += 1
            code = ""
            if answer.status in (429, 503) and answer.body:
                try:
                    code = json.loads(answer.body).get("code", "")
                except ValueError:
                    code = ""
            transient = answer.status == 503 or (answer.status == 429 and code == "rate_limited")
            if not (retry and transient) or attempt == self.retries:
                return answer
            time.sleep(min(float(answer.headers.get("retry-after") or 1), 1.0) * random.uniform(0.5, 1.0))
        return answer

    def ok(self, method, path, payload=None, headers=None, expect=(200, 201, 202, 204)):
        answer = self.call(method, path, payload, headers)
        if answer.status not in expect:
            raise RuntimeError(f"{method} {path}: expected {expect}, got {answer}")
        return answer.json()


# --- WebSocket (RFC 6455, client side, text frames) -------------------------------------


class WebSocket:
    def __init__(self, port, path, headers, protocol=None):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Upgrade: websocket",
                 "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
        if protocol:
            lines.append(f"Sec-WebSocket-Protocol: {protocol}")
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise RuntimeError(f"{path}: the upgrade was answered with nothing")
            head += chunk
        head, self.buffer = head.split(b"\r\n\r\n", 1)
        if not head.startswith(b"HTTP/1.1 101"):
            self.sock.close()
            error = Unavailable if head.startswith(b"HTTP/1.1 503") else RuntimeError
            raise error(f"{path}: upgrade refused: {head[:200]!r}")
        self.sock.settimeout(None)
        self.lock = threading.Lock()
        self.closed = False
        self.close_reason = None

    def _read(self, n):
        while len(self.buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def _frame(self, opcode, payload):
        header = bytes([0x80 | opcode])
        length = len(payload)
        if length < 126:
            header += bytes([0x80 | length])
        elif length < 65536:
            header += bytes([0x80 | 126]) + struct.pack("!H", length)
        else:
            header += bytes([0x80 | 127]) + struct.pack("!Q", length)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        with self.lock:
            self.sock.sendall(header + mask + masked)

    def send(self, message):
        self._frame(0x1, json.dumps(message).encode())

    def receive(self):
        """The next text message (parsed), answering pings; None once closed."""
        message = b""
        while True:
            try:
                first, second = self._read(2)
                length = second & 0x7F
                if length == 126:
                    length = struct.unpack("!H", self._read(2))[0]
                elif length == 127:
                    length = struct.unpack("!Q", self._read(8))[0]
                payload = self._read(length)
            except (EOFError, OSError):
                self.closed = True
                return None
            opcode = first & 0x0F
            if opcode == 0x9:
                self._frame(0xA, payload)
                continue
            if opcode == 0x8:
                self.closed = True
                self.close_reason = (struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None,
                                     payload[2:].decode(errors="replace"))
                return None
            if opcode in (0x1, 0x0):
                message += payload
                if first & 0x80:
                    return json.loads(message)

    def close(self):
        try:
            self._frame(0x8, struct.pack("!H", 1000))
        except OSError:
            pass
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def read_messages(ws, into):
    """Collects every message of `ws` into `into` (a list) until it closes."""
    while True:
        message = ws.receive()
        if message is None:
            return
        into.append(message)


# --- Server-Sent Events -----------------------------------------------------------------


class SseReader(threading.Thread):
    """Holds `GET /v1/events` open and counts the events it reads."""

    def __init__(self, port, token, query):
        super().__init__(daemon=True)
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.connection.request("GET", f"/v1/events{query}",
                                headers={"Authorization": f"Bearer {token}",
                                         "Accept": "text/event-stream"})
        self.response = self.connection.getresponse()
        if self.response.status != 200:
            error = Unavailable if self.response.status == 503 else RuntimeError
            body = self.response.read()[:300]
            self.connection.close()
            raise error(f"GET /v1/events: {self.response.status} {body!r}")
        self.events = Counter()
        self.closed_with = None
        self.start()

    def run(self):
        last_event = None
        try:
            for line in self.response:
                if line.startswith(b"event: "):
                    last_event = line[7:].strip().decode()
                    self.events[last_event] += 1
                elif line.startswith(b"data: ") and last_event == "close":
                    self.closed_with = line[6:].strip().decode()
        except Exception:  # noqa: BLE001 - the stream was cut (by close, or the server)
            pass

    def close(self):
        try:
            self.connection.sock.shutdown(socket.SHUT_RDWR)
        except (OSError, AttributeError):
            pass
        self.join(timeout=5)
        self.connection.close()


def stalled_stream(port, token, query, attempts=10):
    """A client that opens the stream and then reads nothing, with a small receive buffer,
    so the server's writes to it soon block and its subscriber's buffer fills. (A 503 — the
    admission limit — is retried.)"""
    for _ in range(attempts):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(30)
        sock.connect(("127.0.0.1", port))
        sock.sendall(f"GET /v1/events{query} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     f"Authorization: Bearer {token}\r\n\r\n".encode())
        head = b""
        while b"\r\n" not in head:
            chunk = sock.recv(256)
            if not chunk:
                break
            head += chunk
        if head.startswith(b"HTTP/1.1 503"):
            sock.close()
            time.sleep(0.5)
            continue
        if not head.startswith(b"HTTP/1.1 200"):
            sock.close()
            raise RuntimeError(f"the stalled stream was refused: {head[:300]!r}")
        while b": connected" not in head:
            chunk = sock.recv(256)
            if not chunk:
                raise RuntimeError(f"the stalled stream ended at once: {head[:300]!r}")
            head += chunk
        return sock
    raise RuntimeError(f"the stalled stream was refused 503 {attempts} times")


def retrying(open_, attempts=10):
    """`open_()`, again after a pause while it fails with a 503 (the admission limit)."""
    for attempt in range(attempts):
        try:
            return open_()
        except Unavailable:
            if attempt == attempts - 1:
                raise
            time.sleep(0.5)


class Unavailable(RuntimeError):
    pass


# --- Webhook receiver -------------------------------------------------------------------


class Receiver:
    """POST /ok answers 204, POST /fail answers 500; counts what arrived."""

    def __init__(self):
        received = self.received = Counter()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("content-length") or 0))
                received[self.path] += 1
                self.send_response(204 if self.path == "/ok" else 500)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


# --- A TCP proxy in front of Redis, which can be cut ------------------------------------


class RedisProxy:
    """Forwards 127.0.0.1:<port> to `upstream` (Redis). `cut()` closes every connection through it and
    refuses new ones until `restore()`: to the server, Redis has gone away."""

    def __init__(self, upstream):
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.down = False
        self.open = set()
        self.lock = threading.Lock()
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopped:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.down:
                client.close()
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=2)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.open.update((client, server))
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source, target):
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                target.sendall(data)
        except OSError:
            pass
        for sock in (source, target):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        with self.lock:
            self.open.discard(source)

    def cut(self):
        self.down = True
        with self.lock:
            for sock in list(self.open):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()
            self.open.clear()

    def restore(self):
        self.down = False

    def close(self):
        self.stopped = True
        self.cut()
        self.listener.close()


# --- The load ---------------------------------------------------------------------------


class Load:
    """Runs the load for `seconds` against instance `port` (and a little against `other`, a
    second instance on the same database and Redis)."""

    def __init__(self, port, other, seconds, binary, database_url, proxy, env):
        self.port, self.other, self.seconds = port, other, seconds
        self.binary, self.database_url, self.proxy, self.env = binary, database_url, proxy, env
        self.statuses = Counter()
        self.notes = []
        self.failures = []
        self.stop = threading.Event()
        self.orders_placed = 0
        self.lock = threading.Lock()
        self.receiver = Receiver()

    def client(self, auth=None, port=None, retries=5):
        return Client(port or self.port, self.statuses, auth, retries)

    def metric(self, name):
        """The sum of a metric's series on the main instance's /metrics, now (0 when absent)."""
        text = self.client().call("GET", "/metrics", retry=False).body.decode()
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                total += float(line.rsplit(" ", 1)[1])
        return total

    # Set-up: tenants, credentials, catalog, webhooks.
    def set_up(self):
        operator = self.client(auth=self.env.get("TENANTRY_OPERATOR_TOKEN", "dev-operator-token"))
        self.shop = operator.ok("POST", "/v1/platform/tenants", {
            "slug": "shop", "name": "Shop", "plan": "enterprise",
            "owner_email": "owner@shop.test", "owner_password": PASSWORD})["tenant"]
        self.tiny = operator.ok("POST", "/v1/platform/tenants", {
            "slug": "tiny", "name": "Tiny", "plan": "free",
            "owner_email": "owner@tiny.test", "owner_password": PASSWORD})["tenant"]
        # Small allowances, so that a few writes reach 80 %, 100 % and a refusal.
        operator.ok("PUT", f"/v1/platform/tenants/{self.tiny['id']}/limits",
                    {"products": 5, "orders_per_month": 5})
        operator.ok("GET", "/v1/platform/tenants")
        anonymous = self.client()
        self.shop_token = anonymous.ok("POST", "/v1/auth/login", {
            "tenant": "shop", "email": "owner@shop.test", "password": PASSWORD})["access_token"]
        self.tiny_token = anonymous.ok("POST", "/v1/auth/login", {
            "tenant": "tiny", "email": "owner@tiny.test", "password": PASSWORD})["access_token"]
        owner = self.client(auth=self.shop_token)
        self.shop_key = owner.ok("POST", "/v1/api-keys", {
            "name": "shop-app",
            "scopes": ["catalog:read", "catalog:write", "orders:read", "orders:write",
                       "realtime:subscribe"]})["key"]
        self.tiny_key = self.client(auth=self.tiny_token).ok("POST", "/v1/api-keys", {
            "name": "tiny-app", "scopes": ["catalog:read", "catalog:write", "orders:read",
                                           "orders:write"]})["key"]
        receiver = f"http://127.0.0.1:{self.receiver.port}"
        self.good_endpoint = owner.ok("POST", "/v1/webhook-endpoints", {
            "url": f"{receiver}/ok", "event_types": ["order.*"],
            "description": "answers 204"})["id"]
        self.bad_endpoint = owner.ok("POST", "/v1/webhook-endpoints", {
            "url": f"{receiver}/fail", "event_types": ["order.placed"],
            "description": "answers 500"})["id"]
        key = self.client(auth=self.shop_key)
        self.products = {"EUR": [], "USD": []}
        for i in range(24):
            currency = "EUR" if i % 3 else "USD"
            product = key.ok("POST", "/v1/products", {
                "sku": f"SKU-{i:03}", "name": f"Product {i}", "price_cents": 250 + 125 * i,
                "currency": currency, "stock": 1_000_000})
            self.products[currency].append(product["id"])
        self.customers = [key.ok("POST", "/v1/customers", {
            "email": f"customer{i}@shop.test", "name": f"Customer {i}"})["id"] for i in range(8)]

    # The steady part: orders placed and moved, reads of every kind.
    def worker(self, index):
        api = self.client(auth=self.shop_key)
        rng = random.Random(index)
        orders = []
        try:
            while not self.stop.is_set():
                currency = "EUR" if rng.random() < 0.7 else "USD"
                items = [{"product_id": p, "quantity": rng.randint(1, 3)}
                         for p in rng.sample(self.products[currency], rng.randint(1, 3))]
                answer = api.call("POST", "/v1/orders", {
                    "customer_id": rng.choice(self.customers), "items": items})
                if answer.status == 201:
                    order = answer.json()
                    orders.append(order["id"])
                    with self.lock:
                        self.orders_placed += 1
                    self.move(api, rng, order)
                api.call("GET", f"/v1/orders/{rng.choice(orders)}" if orders else "/v1/orders")
                api.call("GET", f"/v1/products/{rng.choice(self.products[currency])}")
                api.call("GET", f"/v1/customers/{rng.choice(self.customers)}")
                if rng.random() < 0.3:
                    api.call("GET", "/v1/orders?limit=20&expand=customer")
                if rng.random() < 0.2:
                    api.call("POST", "/graphql", {"query": "{ orders(first: 10) { edges { node { id status totalCents customer { name } items { quantity product { sku } } } } } }"})
                if rng.random() < 0.1:
                    api.call("GET", f"/v1/orders/{uuid.uuid4()}")      # 404
                    api.call("GET", "/v1/no-such-route")                # 404, unmatched
                    api.call("POST", "/v1/products", {"sku": "", "price_cents": "ten"})  # 422
        except Exception as error:  # noqa: BLE001 - reported, the load goes on
            self.failures.append(f"worker {index}: {error}")
        finally:
            api.close()

    def move(self, api, rng, order):
        path = f"/v1/orders/{order['id']}"
        roll = rng.random()
        if roll < 0.15:
            api.call("POST", f"{path}/cancel", {"reason": "changed their mind"})
            return
        if roll < 0.3:
            return
        steps = [("confirm", {}), ("pay", {"amount_cents": order["total_cents"], "reference": f"pay-{order['id']}"}),
                 ("ship", {}), ("deliver", {})]
        for verb, body in steps[: rng.randint(1, 4)]:
            if api.call("POST", f"{path}/{verb}", body).status != 200:
                return
        if rng.random() < 0.1:
            api.call("POST", f"{path}/cancel", {"reason": "too late?"})  # 409 once shipped

    # Realtime sessions, held open while orders are placed.
    def open_streams(self):
        self.sse = retrying(lambda: SseReader(self.port, self.shop_token, "?types=order.*"))
        self.ws_messages, self.ws2_messages, self.gql_messages = [], [], []
        auth = {"Authorization": f"Bearer {self.shop_token}"}
        self.ws = retrying(lambda: WebSocket(self.port, "/v1/realtime", auth))
        self.ws2 = retrying(lambda: WebSocket(self.port, "/v1/realtime", auth))
        for ws, into in ((self.ws, self.ws_messages), (self.ws2, self.ws2_messages)):
            threading.Thread(target=read_messages, args=(ws, into), daemon=True).start()
        self.ws.send({"type": "subscribe", "channel": "orders", "ref": "1"})
        self.ws.send({"type": "subscribe", "channel": "room:lobby", "ref": "2"})
        self.ws2.send({"type": "subscribe", "channel": "room:lobby", "ref": "1"})
        self.gql = retrying(lambda: WebSocket(self.port, "/graphql", auth, protocol="graphql-transport-ws"))
        self.gql.send({"type": "connection_init", "payload": {}})
        threading.Thread(target=read_messages, args=(self.gql, self.gql_messages), daemon=True).start()
        self.gql.send({"type": "subscribe", "id": "1", "payload": {
            "query": 'subscription { events(types: ["order.*"]) { id type streamId } }'}})

    def broadcaster(self):
        n = 0
        while not self.stop.wait(0.5):
            n += 1
            try:
                self.ws2.send({"type": "broadcast", "channel": "room:lobby",
                               "data": {"n": n}, "ref": f"b{n}"})
            except OSError as error:
                self.failures.append(f"broadcast: {error}")
                return

    def close_streams(self):
        for ws in (self.ws, self.ws2, self.gql):
            ws.close()
        self.sse.close()

    # The rare paths, one after the other while the workers run.
    def scenarios(self):
        steps = [
            ("login lock-outs", self.login_lockouts),
            ("a burst of logins the argon2 queue refuses", self.hashing_busy),
            ("quota refusals and 80 %/100 % warnings", self.quotas),
            ("a rate-limited burst", self.rate_limit_burst),
            ("a burst the database admission limit refuses", self.admission_burst),
            ("a Redis outage (the proxy cut for 4 s)", self.redis_outage),
            ("a slow realtime consumer", self.slow_consumer),
            ("a read-model rebuild (tenantry projections rebuild)", self.rebuild),
            ("a change on the second instance", self.second_instance),
        ]
        for title, step in steps:
            if self.stop.is_set():
                self.failures.append(f"no time left for: {title}")
                continue
            started = time.monotonic()
            try:
                note = step()
                self.notes.append(f"{title}: {note} ({time.monotonic() - started:.1f} s)")
            except Exception as error:  # noqa: BLE001 - reported with the others
                self.failures.append(f"{title}: {type(error).__name__}: {error} "
                                     f"(after {time.monotonic() - started:.1f} s)")

    def quotas(self):
        api = self.client(auth=self.tiny_key)
        statuses = []
        product = None
        for i in range(6):
            answer = api.call("POST", "/v1/products", {
                "sku": f"TINY-{i}", "name": f"Tiny {i}", "price_cents": 100,
                "currency": "EUR", "stock": 1000})
            statuses.append(answer.status)
            if answer.status == 201:
                product = answer.json()["id"]
        customer = api.ok("POST", "/v1/customers", {"email": "c@tiny.test", "name": "C"})["id"]
        for _ in range(6):
            answer = api.call("POST", "/v1/orders", {
                "customer_id": customer, "items": [{"product_id": product, "quantity": 1}]})
            statuses.append(answer.status)
        query = {"query": 'mutation($c: ID!, $p: ID!) { placeOrder(input: {customerId: $c, items: [{productId: $p, quantity: 1}]}) { id } }',
                 "variables": {"c": customer, "p": product}}
        graphql = api.call("POST", "/graphql", query).json()
        codes = [e.get("extensions", {}).get("code") for e in (graphql or {}).get("errors", [])]
        if 403 not in statuses or 429 not in statuses:
            raise RuntimeError(f"expected a 403 and a 429 quota_exceeded, got {statuses}")
        return f"statuses {statuses}, GraphQL {codes}"

    def rate_limit_burst(self):
        statuses = Counter()

        def hammer():
            api = self.client(auth=self.tiny_key, retries=0)
            try:
                for _ in range(15):
                    statuses[api.call("GET", "/v1/products", retry=False).status] += 1
            except (OSError, http.client.HTTPException) as error:
                statuses[type(error).__name__] += 1
            api.close()

        threads = [threading.Thread(target=hammer) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if not statuses[429]:
            raise RuntimeError(f"no request was rate limited: {dict(statuses)}")
        return f"statuses {dict(statuses)}"

    def login_lockouts(self):
        api = self.client()
        # (503s — a busy argon2 slot, the admission limit — are retried; a lock-out's 429
        # is not.)
        statuses = [api.call("POST", "/v1/auth/login", {
            "tenant": "tiny", "email": "nobody@tiny.test", "password": "wrong password!"}
        ).status for _ in range(4)]
        if 429 not in statuses:
            raise RuntimeError(f"no login was locked out: {statuses}")
        return f"statuses {statuses}"

    def hashing_busy(self):
        codes = Counter()

        def login():
            try:
                answer = self.client().call("POST", "/v1/auth/login", {
                    "tenant": "shop", "email": "owner@shop.test", "password": PASSWORD},
                    retry=False)
                codes[(answer.json() or {}).get("code", answer.status) if answer.status != 200 else 200] += 1
            except (OSError, http.client.HTTPException, ValueError) as error:
                codes[type(error).__name__] += 1

        for _ in range(3):
            threads = [threading.Thread(target=login) for _ in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            if codes["password_hashing_busy"]:
                return f"answers {dict(codes)}"
        raise RuntimeError(f"no login was refused password_hashing_busy: {dict(codes)}")

    def admission_burst(self):
        statuses = Counter()
        deadline = time.monotonic() + 8

        def hammer():
            api = self.client(auth=self.shop_key, retries=0)
            try:
                while time.monotonic() < deadline and not statuses[503] >= 20:
                    statuses[api.call("GET", "/v1/orders?limit=50&expand=customer,items.product",
                                      retry=False).status] += 1
            except (OSError, http.client.HTTPException) as error:
                statuses[type(error).__name__] += 1
            api.close()

        threads = [threading.Thread(target=hammer) for _ in range(24)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if not statuses[503]:
            raise RuntimeError(f"nothing was refused at the admission limit: {dict(statuses)}")
        return f"statuses {dict(statuses)}"

    def redis_outage(self):
        errors_before = self.metric("redis_errors_total")
        self.proxy.cut()
        try:
            api = self.client(auth=self.shop_key)
            deadline = time.monotonic() + 4
            while time.monotonic() < deadline:
                # Writes publish invalidations (unsent now); reads miss Redis' cache level.
                api.call("PATCH", f"/v1/customers/{random.choice(self.customers)}",
                         {"name": f"Renamed {random.randint(0, 9999)}"})
                api.call("GET", f"/v1/products/{random.choice(self.products['EUR'])}")
                time.sleep(0.05)
            api.close()
        finally:
            self.proxy.restore()
        errors = self.metric("redis_errors_total") - errors_before
        if errors <= 0:
            raise RuntimeError("the server saw no Redis error while the proxy was cut")
        return f"{errors:.0f} Redis errors counted"

    def slow_consumer(self):
        before = self.metric("realtime_overflows_total")
        # On the tiny tenant: the hub offers every event of a tenant to each of its
        # subscribers (they filter afterwards), so these would crowd the shop's streams too.
        stalled = stalled_stream(self.port, self.tiny_token, "?types=product.updated")
        try:
            # Product events of 2 KiB, straight into the event store as the catalog's
            # trigger would write them (as the realtime test does), 1 MiB at a time: once the
            # stalled socket's kernel buffers are full (a few MiB), the subscriber's buffer
            # (TENANTRY_REALTIME_BUFFER, 1024 events) fills, and it is dropped.
            for round_ in range(40):
                subprocess.run(
                    ["psql", "-q", "-v", "ON_ERROR_STOP=1", self.database_url, "-c",
                     "insert into domain_events (tenant_id, stream_type, stream_id, version, event_id, event_type, data, metadata) "
                     f"select '{self.tiny['id']}', 'product', gen_random_uuid(), 1, gen_random_uuid(), 'product.updated', "
                     "jsonb_build_object('pad', repeat('x', 2000)), '{}' from generate_series(1, 500)"],
                    check=True, capture_output=True, timeout=30)
                if self.metric("realtime_overflows_total") > before:
                    return f"dropped after {round_ + 1} MiB"
                time.sleep(0.1)
            raise RuntimeError("the stalled subscriber was never dropped")
        finally:
            stalled.close()

    def rebuild(self):
        result = subprocess.run([self.binary, "projections", "rebuild", "--tenant", "tiny"],
                                env=self.env, capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise RuntimeError(f"exit {result.returncode}: {result.stderr.strip()[-500:]}")
        return result.stdout.strip().splitlines()[-1] if result.stdout.strip() else "done"

    def second_instance(self):
        before = self.metric("cache_invalidations_received_total")
        api = self.client(auth=self.shop_key, port=self.other)
        for customer in self.customers[:3]:
            api.ok("PATCH", f"/v1/customers/{customer}", {"name": "Changed elsewhere"})
        api.ok("GET", f"/v1/customers/{self.customers[0]}")
        api.close()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if self.metric("cache_invalidations_received_total") > before:
                return "its invalidations reached the first instance"
            time.sleep(0.2)
        raise RuntimeError("no invalidation from the second instance arrived")

    def run(self):
        started = time.monotonic()
        self.set_up()
        log(f"set up: 2 tenants, {sum(map(len, self.products.values()))} products, "
            f"{len(self.customers)} customers, 2 webhook endpoints ({time.monotonic() - started:.1f} s)")
        self.open_streams()
        threads = [threading.Thread(target=self.worker, args=(i,), daemon=True) for i in range(4)]
        threads.append(threading.Thread(target=self.broadcaster, daemon=True))
        for t in threads:
            t.start()
        scenarios = threading.Thread(target=self.scenarios, daemon=True)
        scenarios.start()
        scenarios.join(timeout=max(self.seconds - (time.monotonic() - started), 1))
        remaining = self.seconds - (time.monotonic() - started)
        if remaining > 0:
            time.sleep(remaining)
        self.stop.set()
        for t in threads:
            t.join(timeout=30)
        scenarios.join(timeout=30)
        time.sleep(0.5)
        self.close_streams()
        for note in self.notes:
            log(note)
        log(f"{self.orders_placed} orders placed by the workers; SSE read {sum(self.sse.events.values())} events, "
            f"the WebSocket {sum(1 for m in self.ws_messages if m.get('type') == 'event')} events and "
            f"{sum(1 for m in self.ws_messages if m.get('type') == 'broadcast')} broadcasts, the GraphQL "
            f"subscription {sum(1 for m in self.gql_messages if m.get('type') == 'next')} events; "
            f"webhooks received {dict(self.receiver.received)}")
        ended = [m for m in self.gql_messages + self.ws_messages + self.ws2_messages
                 if m.get("type") in ("error", "complete") or (m.get("type") == "next" and m.get("payload", {}).get("errors"))]
        ended += [f"{name} closed {ws.close_reason}" for name, ws in
                  (("websocket", self.ws), ("websocket 2", self.ws2), ("graphql", self.gql)) if ws.close_reason]
        if self.sse.closed_with:
            ended.append(f"SSE closed: {self.sse.closed_with}")
        if ended:
            self.failures.append(f"realtime sessions ended before the load did: {ended[:6]}")
        log("statuses answered: " + ", ".join(f"{s}: {n}" for s, n in sorted(self.statuses.items())))
        return time.monotonic() - started
