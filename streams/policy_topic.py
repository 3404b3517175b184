"""The published policy (SPEC 11): ``publish`` writes a policy file to ``<app_id>.policy``; a
``PolicyWatcher`` in every worker reads that topic and hands it each policy published there.

- The topic (``Topics.policy``) is compacted, with one partition and one key, ``policy``; the value
  is the TOML text as written. So the topic is one sequence of policies and the latest one wins.
- The watcher uses ``assign()``, never a consumer group: every worker must see every policy (a group
  would give the one partition to one member), and a reader outside the group never triggers a
  rebalance of the lead partitions. It reads from the beginning, so a worker that starts after a
  publication uses the published policy, not its ``--policy`` file (``catch_up``, before the worker
  processes anything); afterwards a thread polls for new records (a long poll of ``POLL_MS``).
- A record that is not a loadable policy (the topic can be written by anyone: a tombstone, another
  key, not UTF-8, bad TOML, an unknown key) is refused, with the reason naming the topic, offset,
  line and key; the worker keeps the policy it has.

The watcher knows nothing of faust: the worker (``leadflow.worker``) decides what a new policy does.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from lifecycle.errors import LeadflowError, PolicyError
from lifecycle.policy import Policy
from schemas.policy_file import load_policy, parse_policy
from streams.topics import TopicSpec, ensure_topics

log = logging.getLogger("leadflow.policy")

POLICY_KEY: Final = b"policy"
#: How long one poll of the watcher's thread waits for a new record, milliseconds.
POLL_MS: Final = 500


class PolicyTopicError(LeadflowError):
    """The policy topic cannot be read or written."""


@dataclass(frozen=True)
class Published:
    """A policy read from the topic, and where."""

    policy: Policy
    offset: int

    @property
    def version(self) -> str:
        return self.policy.policy_version


@dataclass(frozen=True)
class Refused:
    """A record of the topic that is not a loadable policy, and why."""

    offset: int
    reason: str


def read_record(topic: str, offset: int, key: bytes | None, value: bytes | None) -> Published | Refused:
    """The policy one record of the policy topic holds, or why it holds none."""
    if key != POLICY_KEY:
        return Refused(offset, f"{topic}@{offset}: key {key!r} is not {POLICY_KEY!r}")
    if value is None:
        return Refused(offset, f"{topic}@{offset}: a tombstone, not a policy")
    try:
        text = value.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return Refused(offset, f"{topic}@{offset}: not UTF-8 text (byte {exc.start})")
    try:
        return Published(parse_policy(text, f"{topic}@{offset}"), offset)
    except PolicyError as exc:
        return Refused(offset, str(exc))


def publish(bootstrap: str, spec: TopicSpec, path: str, *, client_kwargs: Mapping[str, Any] | None = None,
            timeout: float = 10.0) -> Published:
    """Validate the policy file at ``path`` (``PolicyError`` naming file, line and key) and write
    its text to the policy topic, creating the topic if missing. Returns what the workers will read."""
    from kafka import KafkaProducer

    policy = load_policy(path)
    with open(path, "rb") as f:
        text = f.read()
    ensure_topics(bootstrap, [spec], client_kwargs=client_kwargs)
    try:
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", client_id="leadflow-policy",
                                 **dict(client_kwargs or {}))
    except Exception as exc:  # noqa: BLE001 - kafka-python raises several unrelated types here
        raise PolicyTopicError(f"cannot reach broker {bootstrap}: {exc}") from exc
    try:
        sent = producer.send(spec.name, key=POLICY_KEY, value=text, partition=0).get(timeout=timeout)
    except Exception as exc:  # noqa: BLE001
        raise PolicyTopicError(f"cannot write to {spec.name}: {exc}") from exc
    finally:
        producer.close(timeout=5)
    return Published(policy, sent.offset)


class PolicyWatcher:
    """Reads the policy topic without a consumer group: ``catch_up`` first, then ``start``."""

    def __init__(self, bootstrap: str, topic: str, *, client_kwargs: Mapping[str, Any] | None = None,
                 poll_ms: int = POLL_MS) -> None:
        from kafka import KafkaConsumer, TopicPartition

        self.topic = topic
        self.poll_ms = poll_ms
        self._tp = TopicPartition(topic, 0)
        try:
            self._consumer = KafkaConsumer(
                bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                auto_offset_reset="earliest", client_id="leadflow-policy-watcher",
                fetch_max_wait_ms=poll_ms, **dict(client_kwargs or {}))
        except Exception as exc:  # noqa: BLE001
            raise PolicyTopicError(f"cannot reach broker {bootstrap}: {exc}") from exc
        self._consumer.assign([self._tp])
        self._consumer.seek_to_beginning(self._tp)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def catch_up(self, timeout: float = 15.0) -> tuple[Published | None, list[Refused]]:
        """Read the topic to its end (blocking): the latest loadable policy (None: nothing
        published) and every record refused on the way."""
        deadline = time.monotonic() + timeout
        latest: Published | None = None
        refused: list[Refused] = []
        while True:
            for got in self._poll(200):
                if isinstance(got, Published):
                    latest = got
                else:
                    refused.append(got)
            high = self._consumer.highwater(self._tp)  # from the fetch: exact, also on Tansu
            if high is not None and self._consumer.position(self._tp) >= high:
                return latest, refused
            if time.monotonic() > deadline:
                raise PolicyTopicError(f"cannot read {self.topic} to its end within {timeout:.0f} s")

    def start(self, on_policy: Callable[[Published], None], on_refused: Callable[[Refused], None]) -> None:
        """Poll on a thread from where ``catch_up`` stopped; call ``on_policy`` / ``on_refused``
        (on that thread) for every record that arrives."""
        self._thread = threading.Thread(target=self._run, args=(on_policy, on_refused),
                                        name="leadflow-policy-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._consumer.close()

    def _poll(self, timeout_ms: int) -> list[Published | Refused]:
        batches = self._consumer.poll(timeout_ms=timeout_ms)
        return [read_record(self.topic, r.offset, r.key, r.value)
                for records in batches.values() for r in records]

    def _run(self, on_policy: Callable[[Published], None], on_refused: Callable[[Refused], None]) -> None:
        while not self._stop.is_set():
            try:
                found = self._poll(self.poll_ms)
            except Exception:  # noqa: BLE001 - a broker hiccup must not end the watch
                log.exception("cannot poll %s; retrying", self.topic)
                self._stop.wait(1.0)
                continue
            for got in found:
                try:
                    if isinstance(got, Published):
                        on_policy(got)
                    else:
                        on_refused(got)
                except Exception:  # noqa: BLE001
                    log.exception("policy callback failed for %s@%s", self.topic, got.offset)
