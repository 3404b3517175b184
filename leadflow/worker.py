"""``leadflow worker``: one member of the consumer group, run in this process until SIGINT/SIGTERM.

Environment (all optional):

- ``LEADFLOW_BROKER``: bootstrap servers when ``--broker`` is not given (else an embedded broker);
- ``LEADFLOW_APP_ID`` (default ``leadflow``): faust app id = consumer group = internal topic prefix;
- ``LEADFLOW_PARTITIONS`` (default 4): partitions of every topic this worker creates;
- ``LEADFLOW_TOPIC_PREFIX``: prefix every topic name (``<prefix>.lead.form_fills`` ...), one
  isolated deployment per prefix on a shared broker;
- ``LEADFLOW_WEB_HOST`` (default ``127.0.0.1``): the host other workers use to reach this one's web
  port (``GET /leads/{id}`` is routed to the worker owning the lead); set it on a real network;
- ``LEADFLOW_WEB_BIND`` (default ``127.0.0.1``): the address the web server listens on;
  ``LEADFLOW_WEB_TOKEN``: bearer token for ``GET /leads/{id}``; ``LEADFLOW_WEB_DEBUG_VIEWS=1``: also
  faust's ``/table`` and ``/router`` views (README: Security);
- ``LEADFLOW_LOGLEVEL`` (default ``warning``);
- ``LEADFLOW_SQL_URL`` / ``LEADFLOW_WEBHOOK_URL``: the outputs also go to these sinks
  (``streams.relay``: consumer group ``<app_id>.sinks``, at least once, idempotent by id).
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from lifecycle.errors import ConfigError, StoreFailure
from lifecycle.policy import Policy
from streams.app import LeadflowApp, build_app
from leadflow.broker import resolve_broker
from streams.settings import ENV_QUIRKS, is_tansu
from streams.config import faust_kwargs, kafka_python_kwargs, load_settings
from streams.policy_topic import PolicyWatcher, Published, Refused
from streams.relay import relay_for
from streams.topics import Topics, deployment_topics, ensure_topics

log = logging.getLogger("leadflow.policy")


def topics_from_env(env: Any = os.environ) -> Topics:
    """The deployment's topics (with the lead table's changelog), from validated settings.

    Every ``LEADFLOW_*`` variable is checked here, at start-up: a bad one stops the worker with
    one line per bad value (exit status 2), never half-way through a stream.
    """
    return deployment_topics(load_settings(dict(env)))


def broker_quirks(settings: Any, bootstrap: str, embedded: bool) -> bool:
    """Whether the Tansu workarounds apply: the embedded broker, else ``streams.settings.is_tansu``.

    ``is_tansu`` probes in PLAINTEXT, and a TLS or SASL listener never answers that: the probe would
    wait 30 s and say no. No Tansu 0.6 is secured (its ``--cert``/``--key`` cannot be given together
    and SASL users need storage shared with the broker), so a secured broker is taken as not Tansu
    unless ``$LEADFLOW_BROKER_QUIRKS`` says otherwise (e.g. a Tansu behind a TLS terminator).
    """
    if embedded:
        return True
    if settings.security_protocol != "PLAINTEXT" and not os.environ.get(ENV_QUIRKS, "").strip():
        return False
    return is_tansu(bootstrap)


def run(broker: str | None, policy: Policy | None, policy_path: str | None = None,
        web_port: int | None = 6066, data_dir: str | None = None) -> None:
    settings = load_settings()  # every LEADFLOW_* value is checked before anything starts
    if policy is None and settings.policy:  # LEADFLOW_POLICY, when --policy is not given
        from schemas.policy_file import load_policy

        policy, policy_path = load_policy(settings.policy), settings.policy
    topics = deployment_topics(settings)
    if web_port:
        check_port(settings.web_bind, web_port)  # one line now, not a traceback from faust later
    if data_dir is not None:
        check_data_dir(data_dir)  # read-only or full: one line now, not a RocksDB traceback later
    bootstrap, embedded = resolve_broker(broker)
    watcher: PolicyWatcher | None = None
    try:
        remote = embedded is None  # security settings are for the user's cluster, never the embedded one
        ensure_topics(bootstrap, topics, client_kwargs=kafka_python_kwargs(settings) if remote else None)
        quirks = broker_quirks(settings, bootstrap, embedded is not None)
        # SPEC 11: a policy published on <app_id>.policy wins over --policy, from the first message on
        watcher = PolicyWatcher(bootstrap, topics.policy,
                                client_kwargs=kafka_python_kwargs(settings) if remote else None)
        published, refused = watcher.catch_up()
        if published is not None:
            policy = published.policy
        elif policy is None:
            policy = Policy()
        lf = build_app(topics.app_id, bootstrap, quirks, policy, topics,
                       web_port=web_port, data_dir=data_dir, web_host=settings.web_host,
                       web_bind=settings.web_bind, web_token=settings.web_token,
                       web_debug_views=settings.web_debug_views,
                       **(faust_kwargs(settings) if remote else {}))
        lf.store_retry_seconds = settings.store_retry_seconds
        lf.future_margin_ms = settings.future_margin_ms
        for refusal in refused:
            _refuse(lf, refusal)
        if settings.schema_registry_url:  # Avro inputs: ids from the registry (cached); unknown -> DLQ
            from schemas.registry import RegistryClient

            lf.lookup = RegistryClient(settings.schema_registry_url)
            if settings.format == "avro":  # outputs too, under schemas registered at start-up
                from streams.output import AvroOutput

                lf.output = AvroOutput.register(lf.lookup, topics)
        where = (f"embedded broker {bootstrap}" if embedded is not None
                 else f"{bootstrap} (Tansu)" if quirks else bootstrap)
        used = (f"published policy {published.policy.source} (--policy {policy_path} not used)"
                if published is not None and policy_path else
                f"published policy {published.policy.source}" if published is not None else
                f"policy {policy_path or 'built-in'}")
        print(f"leadflow worker {topics.app_id}: {where}, {topics.partitions} partitions, "
              f"{used} version {policy.policy_version}"
              + f", {lf.output.name} output"
              + (f", http://{_url_host(settings.web_bind)}:{web_port}/health" if web_port else "")
              + (", lead lookups need the web token" if web_port and settings.web_token else ""),
              file=sys.stderr, flush=True)
        _dump_tasks_on_sigusr1()
        worker = _worker_class()(lf.app, loglevel=settings.loglevel,
                                 quiet=True, redirect_stdouts=False)
        loop = worker.loop  # a new policy is applied on it, between two messages
        watcher.start(on_policy=lambda new: loop.call_soon_threadsafe(_switch, lf, new),
                      on_refused=lambda refusal: _refuse(lf, refusal))
        # LEADFLOW_SQL_URL / LEADFLOW_WEBHOOK_URL: the outputs are relayed to them by a consumer of
        # its own (group <app_id>.sinks, at least once) on a thread, never on faust's event loop
        relay = relay_for(settings, bootstrap, topics, lookup=lf.lookup, tansu=quirks,
                          client_kwargs=kafka_python_kwargs(settings) if remote else None,
                          encode_dlq=lf.output.dlq)
        if relay is not None:
            print(f"leadflow worker {topics.app_id}: {relay.describe()}", file=sys.stderr, flush=True)
            relay.start()
        try:
            worker.execute_from_commandline()
        except SystemExit as done:
            if lf.fatal is not None:  # one line on stderr, exit status 1
                raise StoreFailure(lf.fatal) from None
            if done.code not in (None, 0):
                raise
        finally:
            if relay is not None:
                relay.stop()  # flush, commit, close the sinks
    finally:
        if watcher is not None:
            watcher.stop()
        if embedded is not None:
            embedded.stop()


def _worker_class() -> Any:
    """faust's Worker without its terminal spinner.

    For the spinner to turn on every log record, faust sets the root logger to DEBUG whenever the
    level is WARNING or above (the default here) and leaves it so after start-up: every
    ``log.debug`` of aiokafka and faust — several per message — then built a record that the
    handlers threw away (py-spy, one worker on the realistic mix: ~7% of the event loop's time).
    Without the spinner the root logger keeps the configured level."""
    import faust

    class Worker(faust.Worker):
        def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
            self.spinner = None
            super().on_setup_root_logger(logger, level)

    return Worker


def check_port(host: str, port: int) -> None:
    """``ConfigError`` (exit status 2, one line) when ``host:port`` cannot be listened on: taken by
    another process, or an address this machine does not have."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        raise ConfigError(f"--web-port {port}: cannot resolve LEADFLOW_WEB_BIND={host!r}: {exc}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp does
        try:
            probe.bind(address)
        except OSError as exc:
            raise ConfigError(f"--web-port {port}: cannot listen on {host}:{port}: "
                              f"{exc.strerror or exc}") from None


#: What the start-up check writes (and removes) in a data directory: enough to see a full disk.
DATA_DIR_PROBE_BYTES = 64 * 1024


def check_data_dir(path: str) -> None:
    """``ConfigError`` (exit status 2, one line) when ``--data-dir`` cannot be created or written:
    read-only, full, not a directory. Writes, syncs and removes ``DATA_DIR_PROBE_BYTES`` there."""
    import errno
    from pathlib import Path

    directory = Path(path)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--data-dir {directory}: cannot create it: {exc.strerror or exc}") from None
    probe = directory / f".leadflow-write-check-{os.getpid()}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            view = memoryview(bytes(DATA_DIR_PROBE_BYTES))
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        why = "the disk is full" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else exc.strerror or str(exc)
        raise ConfigError(f"--data-dir {directory}: cannot write there: {why}") from None
    finally:
        try:
            os.unlink(probe)
        except OSError:
            pass


def _url_host(host: str) -> str:
    """The bind address as a URL host: ``[::1]`` for IPv6, ``127.0.0.1`` for every interface."""
    if host in ("0.0.0.0", "::", ""):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host
def _switch(lf: LeadflowApp, new: Published) -> None:
    """Judge by a newly published policy from the next message on (on the event loop)."""
    current = lf.engine.policy.policy_version
    if new.version == current:
        log.info("policy %s published again (version %s): already in use", new.policy.source, current)
        return
    lf.use_policy(new.policy)
    lf.metrics.policy_changes.inc()
    print(f"leadflow worker {lf.topics.app_id}: switched to published policy {new.policy.source} "
          f"version {new.version} (was {current})", file=sys.stderr, flush=True)


def _refuse(lf: LeadflowApp, refusal: Refused) -> None:
    """A published record that is not a loadable policy: counted, logged, the policy stays."""
    lf.metrics.policy_refused.inc()
    log.error("published policy refused, keeping version %s: %s", lf.engine.policy.policy_version,
              refusal.reason)


def _dump_tasks_on_sigusr1() -> None:
    """``kill -USR1 <pid>`` prints every thread's and every asyncio task's stack to stderr."""
    import asyncio
    import faulthandler
    import signal

    def dump(signum: int, frame: Any) -> None:
        faulthandler.dump_traceback(all_threads=True)
        try:
            loop = asyncio.get_event_loop()
            for task in asyncio.all_tasks(loop):
                task.print_stack(limit=12, file=sys.stderr)
        except Exception as exc:  # noqa: BLE001 - diagnostics only
            print(f"cannot list tasks: {exc}", file=sys.stderr)
        sys.stderr.flush()

    signal.signal(signal.SIGUSR1, dump)
