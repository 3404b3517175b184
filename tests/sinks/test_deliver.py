"""``sinks.base.deliver``: add a record, waiting out back-pressure, unless told to stop."""

from __future__ import annotations

import threading

from lifecycle.records import Record
from sinks.base import ListSink, SinkFull, deliver
from tests.sinks.sample_records import make_alert


class FullFor(ListSink):
    """Refuses the first ``n`` adds with ``SinkFull`` (a queue that drains), then takes records."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.refusals = n

    def add(self, record: Record) -> None:
        if self.refusals:
            self.refusals -= 1
            raise SinkFull(0.001, "queue full")
        super().add(record)


def test_deliver_waits_out_back_pressure_and_adds_the_same_record() -> None:
    sink, alert = FullFor(3), make_alert()
    assert deliver(sink, alert) is True
    assert sink.records == [alert] and sink.refusals == 0


def test_deliver_with_a_stop_event_waits_the_same_way_until_it_is_set() -> None:
    sink, alert = FullFor(3), make_alert()
    assert deliver(sink, alert, threading.Event()) is True
    assert sink.records == [alert]


def test_deliver_gives_up_without_adding_once_stop_is_set() -> None:
    sink, stop = FullFor(10**9), threading.Event()
    stop.set()
    assert deliver(sink, make_alert(), stop) is False
    assert sink.records == [] and sink.refusals == 10**9 - 1


def test_replay_still_reaches_deliver() -> None:
    from leadflow import replay

    assert replay.deliver is deliver
