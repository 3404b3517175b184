"""KafkaSink beyond the contract: each record type to its topic, keyed by ``record_key``, as
``record_json``; acks=0 refused."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from lifecycle.records import AlertRecord, DlqRecord, LifecycleRecord
from schemas.wire import record_json
from sinks.kafka import KafkaSink
from tests.kafka_helpers import consume_all
from tests.sinks.sample_records import make_alert, make_dlq, make_transition


def test_each_record_type_goes_to_its_topic_keyed_by_lead(bootstrap: str, unique_name: Callable[..., str]) -> None:
    from streams.topics import ensure_topics

    topics = {LifecycleRecord: unique_name("lifecycle"), AlertRecord: unique_name("alerts"),
              DlqRecord: unique_name("dlq")}
    ensure_topics(bootstrap, list(topics.values()), partitions=2)
    transition, alert, dlq = make_transition("L7"), make_alert("L8"), make_dlq()
    with KafkaSink(bootstrap, topics) as sink:
        for r in (transition, alert, dlq):
            sink.add(r)
    for record, topic in ((transition, topics[LifecycleRecord]), (alert, topics[AlertRecord]), (dlq, topics[DlqRecord])):
        (message,) = consume_all(bootstrap, topic, expected_count=1, timeout=10, settle=0.3)
        assert message.value == record_json(record)
    assert consume_all(bootstrap, topics[LifecycleRecord], 1, timeout=10)[0].key == b"L7"
    assert consume_all(bootstrap, topics[DlqRecord], 1, timeout=10)[0].key == b"L1"  # its original key


def test_unmapped_record_types_are_skipped(bootstrap: str, unique_name: Callable[..., str]) -> None:
    from streams.topics import ensure_topics

    topic = unique_name("alerts-only")
    ensure_topics(bootstrap, [topic], partitions=1)
    with KafkaSink(bootstrap, {AlertRecord: topic}) as sink:
        sink.add(make_transition())
        sink.add(make_alert())
    assert len(consume_all(bootstrap, topic, timeout=10, idle=1.0)) == 1


def test_acks_zero_is_refused() -> None:
    with pytest.raises(ValueError, match="acks"):
        KafkaSink("127.0.0.1:9", acks=0)


def test_values_in_the_format_given(bootstrap: str, unique_name: Callable[..., str]) -> None:
    """The worker hands its ``LEADFLOW_FORMAT`` encoder over: e.g. webhook dead letters in Avro."""
    from schemas import codec
    from streams.topics import ensure_topics

    topic = unique_name("dlq-avro")
    ensure_topics(bootstrap, [topic], partitions=1)
    dead = make_dlq()
    with KafkaSink(bootstrap, {DlqRecord: topic}, encode=codec.encode_record_avro) as sink:
        sink.add(dead)
    (message,) = consume_all(bootstrap, topic, expected_count=1, timeout=10, settle=0.3)
    assert message.value == codec.encode_record_avro(dead) and message.value[0] == 0
