"""Producers that do not partition like Kafka's Java client: noticed once per source.

The worker processes an event where it lands only when its key is its ``lead_id`` and its partition
is ``murmur2(lead_id) % N`` (Kafka's default partitioner); anything else takes the repartition hop
(``<app>.events-by-lead``): correct, but a second produce and consume per event. librdkafka clients
(confluent-kafka, the Go/.NET/Node rdkafka bindings) partition by CRC32 unless told
``partitioner=murmur2_random``, so about (N-1)/N of their events take the hop. :class:`PlacementWatch`
counts, per source, how many events arrived misplaced and says so once, when most of them do.
Pure: it counts and returns the line to log; the caller logs it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: Sources tracked at most; events of further sources are counted together under ``OTHERS``
#: (the ``source`` field comes from producers: its values are not trusted to stay few).
MAX_SOURCES = 1000
OTHERS = "(other sources)"


@dataclass
class PlacementWatch:
    """Per source: events seen and events misplaced; one warning per source once at least
    ``min_events`` were seen and more than ``share`` of them were misplaced."""

    min_events: int = 100
    share: float = 0.5
    max_sources: int = MAX_SOURCES
    counts: dict[str, list[int]] = field(default_factory=dict)   # source -> [seen, misplaced]
    warned: set[str] = field(default_factory=set)

    def observe(self, source: str, misplaced: bool) -> str | None:
        """Count one event of ``source``; the warning to log, the first time it is due, else None."""
        counts = self.counts.get(source)
        if counts is None:
            if len(self.counts) >= self.max_sources:
                source = OTHERS
                counts = self.counts.setdefault(OTHERS, [0, 0])
            else:
                counts = self.counts[source] = [0, 0]
        counts[0] += 1
        counts[1] += misplaced
        seen, off = counts
        if seen < self.min_events or off <= seen * self.share or source in self.warned:
            return None
        self.warned.add(source)
        return (f"source {source!r}: {off} of {seen} events arrived keyed other than by lead_id or on "
                "another partition than murmur2(lead_id) % partitions, and took the repartition hop; "
                "configure its producer with key = lead_id and partitioner=murmur2_random (librdkafka "
                "clients default to CRC32; README: Producers)")
