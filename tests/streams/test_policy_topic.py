"""The policy topic on the real (embedded Tansu) broker: publish, read it whole without a group,
refuse what is not a policy, see new publications within a second."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from kafka import KafkaProducer

from lifecycle.errors import PolicyError
from schemas.policy_file import load_policy
from streams.policy_topic import POLICY_KEY, PolicyWatcher, Published, Refused, publish
from streams.topics import Topics, ensure_topics

TWO_HOURS = '[sla.first_touch]\nwithin = "2h"\n'
ONE_HOUR = '# another rule\n[sla.first_touch]\nwithin = "1h"\n'


@pytest.fixture
def topics(bootstrap: str, unique_name: Callable[..., str]) -> Topics:
    return Topics.prefixed(unique_name("lfp"))


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def send_raw(bootstrap: str, topic: str, key: bytes | None, value: bytes | None) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        producer.send(topic, key=key, value=value, partition=0).get(timeout=10)
    finally:
        producer.close(timeout=5)


def test_an_empty_topic_has_no_published_policy(bootstrap: str, topics: Topics) -> None:
    ensure_topics(bootstrap, [topics.policy_spec])
    watcher = PolicyWatcher(bootstrap, topics.policy)
    try:
        assert watcher.catch_up(timeout=10) == (None, [])
    finally:
        watcher.stop()


def test_publish_creates_the_topic_and_the_latest_loadable_policy_wins(
        bootstrap: str, topics: Topics, tmp_path: Path) -> None:
    first = publish(bootstrap, topics.policy_spec, str(write(tmp_path, "a.toml", TWO_HOURS)))
    assert first.version == load_policy(tmp_path / "a.toml").policy_version
    second = publish(bootstrap, topics.policy_spec, str(write(tmp_path, "b.toml", ONE_HOUR)))
    assert second.offset == first.offset + 1
    # what anyone else may write: none of it replaces the latest policy
    send_raw(bootstrap, topics.policy, POLICY_KEY, b'[sla.first_touch]\nwithn = "3h"\n')
    send_raw(bootstrap, topics.policy, POLICY_KEY, None)
    send_raw(bootstrap, topics.policy, b"other", TWO_HOURS.encode())
    send_raw(bootstrap, topics.policy, POLICY_KEY, b"\xff\xfe not text")
    watcher = PolicyWatcher(bootstrap, topics.policy)
    try:
        latest, refused = watcher.catch_up(timeout=10)
    finally:
        watcher.stop()
    assert latest is not None and latest.offset == second.offset
    assert latest.version == second.version != first.version
    assert latest.policy.source == f"{topics.policy}@{second.offset}"
    reasons = [r.reason for r in refused]
    assert [r.offset for r in refused] == [second.offset + i for i in (1, 2, 3, 4)]
    assert reasons[0] == (f"{topics.policy}@{second.offset + 1}:2: sla.first_touch.withn: unknown key 'withn'; "
                          "did you mean 'within'? (expected one of: within, business, warn_at, escalate_after)")
    assert "tombstone" in reasons[1] and "key b'other'" in reasons[2] and "not UTF-8" in reasons[3]


def test_a_bad_file_is_refused_before_the_broker_is_touched(tmp_path: Path) -> None:
    bad = write(tmp_path, "bad.toml", "[scoring]\nmql_threshold = 40\n\n[sla.first_touch]\nwithn = \"4h\"\n")
    with pytest.raises(PolicyError) as caught:
        publish("127.0.0.1:1", Topics().policy_spec, str(bad))
    assert (caught.value.file, caught.value.line, caught.value.key) == (str(bad), 5, "sla.first_touch.withn")


def test_the_watcher_reports_each_new_record_within_a_second(
        bootstrap: str, topics: Topics, tmp_path: Path) -> None:
    ensure_topics(bootstrap, [topics.policy_spec])
    watcher = PolicyWatcher(bootstrap, topics.policy)
    seen: list[tuple[float, Published | Refused]] = []
    arrived = threading.Event()

    def note(got: Published | Refused) -> None:
        seen.append((time.monotonic(), got))
        arrived.set()

    try:
        assert watcher.catch_up(timeout=10) == (None, [])
        watcher.start(on_policy=note, on_refused=note)
        time.sleep(0.5)
        sent_at = time.monotonic()
        published = publish(bootstrap, topics.policy_spec, str(write(tmp_path, "p.toml", ONE_HOUR)))
        assert arrived.wait(10)
        arrived.clear()
        send_raw(bootstrap, topics.policy, POLICY_KEY, b"not = [toml")
        assert arrived.wait(10)
    finally:
        watcher.stop()
    (at, got), (_, refusal) = seen
    assert isinstance(got, Published) and got.version == published.version and got.offset == published.offset
    assert at - sent_at < 1.5, at - sent_at
    assert isinstance(refusal, Refused) and "invalid TOML" in refusal.reason
