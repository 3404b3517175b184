"""The faust app the baselines run, one worker process per measurement.

Configured by environment (the driver, ``bench/faust_baselines.py``, sets it):

- ``BENCH_APP_ID``, ``BENCH_BROKER`` (host:port), ``BENCH_SOURCE`` (comma-separated for several topics),
  ``BENCH_SINK``, ``BENCH_DATADIR``
- ``BENCH_MODE``: ``consume`` (count only), ``pass`` (source → agent → sink, one ``send`` per event),
  ``take`` (``stream.take(BENCH_TAKE, within=BENCH_WITHIN)``, then one ``send`` per event of the batch),
  ``take-consume`` (``take`` and count only)
- ``BENCH_COUNT``: the agent writes ``BENCH_REPORT`` (JSON: count, seconds from first to last event)
  when it has seen that many events
- ``BENCH_VALUE_SERIALIZER`` (default ``json``): ``raw`` leaves values undecoded (consume modes over
  inputs that are not all JSON, e.g. the traffic generator's malformed messages)
- ``BENCH_SETTINGS``: JSON object of extra ``faust.App`` settings
- ``BENCH_TABLE=1``: ``pass``/``take`` also update a table row per event (``counts[lead_id] += 1``,
  assigned back), so every event costs a changelog write too — the shape of the real worker

Run: ``python -m bench._faust_app worker -l warn --without-web`` (cwd: the repository root).
"""

from __future__ import annotations

import json
import os
import time

import faust

from streams.settings import faust_broker_url

_env = os.environ
MODE = _env.get("BENCH_MODE", "pass")
COUNT = int(_env.get("BENCH_COUNT", "0"))
REPORT = _env.get("BENCH_REPORT", "")
TAKE = int(_env.get("BENCH_TAKE", "500"))
WITHIN = float(_env.get("BENCH_WITHIN", "0.05"))

#: Group timings only (Tansu holds a join for half the session timeout); everything else faust's default.
GROUP_TIMINGS = {"broker_session_timeout": 3.0, "broker_heartbeat_interval": 1.0,
                 "broker_rebalance_timeout": 3.0}

settings = {
    **GROUP_TIMINGS,
    "broker": faust_broker_url(_env.get("BENCH_BROKER", "127.0.0.1:9092")),
    "datadir": _env.get("BENCH_DATADIR", "/tmp/leadflow-bench-data"),
    "topic_disable_leader": True,
    "web_enabled": False,
    **json.loads(_env.get("BENCH_SETTINGS", "{}")),
}
app = faust.App(_env.get("BENCH_APP_ID", "leadflow-bench"), **settings)
#: one topic, or several separated by commas (the worker's four input topics)
source = app.topic(*_env.get("BENCH_SOURCE", "bench.source").split(","), value_serializer=_env.get("BENCH_VALUE_SERIALIZER", "json"))
sink = app.topic(_env.get("BENCH_SINK", "bench.sink"), value_serializer="json")
TABLE = _env.get("BENCH_TABLE") == "1"
#: changelog: f"{app_id}-counts-changelog" (pre-created by the driver, compacted).
#: Outside per-event iteration (``take``) faust refuses table writes ("Cannot modify table key from
#: outside of stream iteration": the changelog partition comes from the current event). The sanctioned
#: way out is ``use_partitioner=True``: the producer's partitioner picks the changelog partition, which
#: is the source partition only if the table key is serialized to the same bytes as the message key
#: (faust's default ``key_serializer="raw"`` does that for bytes keys; a JSON key serializer would add
#: quotes and silently move rows to another partition's changelog).
counts = (app.Table("counts", default=int, key_type=bytes,
                    use_partitioner=MODE.startswith("take")) if TABLE else None)


def _count_row(lead_id: str) -> None:
    if counts is not None:
        key = lead_id.encode()
        counts[key] = counts[key] + 1     # assign back: mutation alone never reaches the changelog


class _Counter:
    def __init__(self) -> None:
        self.n = 0
        self.first = 0.0
        self.reported = False

    def add(self, k: int) -> None:
        if self.n == 0:
            self.first = time.monotonic()
        self.n += k
        if COUNT and self.n >= COUNT and not self.reported and REPORT:
            self.reported = True
            seconds = time.monotonic() - self.first
            tmp = REPORT + ".tmp"
            with open(tmp, "w") as f:
                json.dump({"count": self.n, "seconds": seconds}, f)
            os.replace(tmp, REPORT)


counter = _Counter()


if MODE == "consume":
    @app.agent(source)
    async def consume(stream):  # type: ignore[no-untyped-def]
        async for _value in stream:
            counter.add(1)

elif MODE == "pass":
    @app.agent(source)
    async def passthrough(stream):  # type: ignore[no-untyped-def]
        async for event in stream.events():
            _count_row(event.value["lead_id"])
            await sink.send(key=event.message.key, value=event.value)
            counter.add(1)

elif MODE == "take":
    @app.agent(source)
    async def batched(stream):  # type: ignore[no-untyped-def]
        async for values in stream.take(TAKE, within=WITHIN):
            for value in values:
                _count_row(value["lead_id"])
                await sink.send(key=value["lead_id"].encode(), value=value)
            counter.add(len(values))

elif MODE == "take-consume":
    @app.agent(source)
    async def batched_consume(stream):  # type: ignore[no-untyped-def]
        async for values in stream.take(TAKE, within=WITHIN):
            counter.add(len(values))

else:
    raise SystemExit(f"unknown BENCH_MODE {MODE!r}")


if __name__ == "__main__":
    app.main()
