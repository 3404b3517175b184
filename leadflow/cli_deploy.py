"""Deployment commands: ``leadflow topics create`` (the compose ``topics`` job) and ``leadflow config``.

Registered in ``leadflow/cli.py`` with::

    from leadflow.cli_deploy import config_command, topics
    cli.add_command(topics); cli.add_command(config_command)
"""

from __future__ import annotations

import time
from collections.abc import Callable

import click

from streams.config import ENV_CONFIG, Settings, kafka_python_kwargs, load_settings
from streams.topics import TopicError, deployment_topics, ensure_topics

config_option = click.option(
    "--config", "config_file", metavar="FILE", type=click.Path(dir_okay=False), default=None,
    help=f"TOML config file (default ${ENV_CONFIG}); LEADFLOW_* variables win over it.")


def create_topics(
    settings: Settings,
    *,
    wait: float = 0.0,
    ensure: Callable[..., dict[str, int]] = ensure_topics,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, int]:
    """Create every topic of ``settings`` (idempotent); retry for up to ``wait`` seconds while the
    broker is not reachable yet. Returns ``{topic: partitions}``; raises ``TopicError``."""
    if settings.broker is None:
        raise TopicError("no broker configured: set LEADFLOW_BROKER or pass --broker")
    topics = deployment_topics(settings)
    deadline = time.monotonic() + wait
    while True:
        try:
            return ensure(settings.broker, topics, replication_factor=settings.replication_factor,
                          client_kwargs=kafka_python_kwargs(settings))
        except TopicError:
            if time.monotonic() >= deadline:
                raise
            sleep(2.0)


@click.group()
def topics() -> None:
    """Kafka topics of the deployment."""


@topics.command("create")
@click.option("--broker", metavar="URL", default=None, help="Kafka bootstrap; default $LEADFLOW_BROKER.")
@click.option("--wait", type=float, default=0.0, show_default=True, metavar="SECONDS",
              help="Keep retrying this long while the broker is unreachable.")
@config_option
def topics_create(broker: str | None, wait: float, config_file: str | None) -> None:
    """Create every topic (inputs, outputs, internal, compacted changelogs); existing ones stay."""
    settings = load_settings(config_file=config_file, broker=broker)
    counts = create_topics(settings, wait=wait)
    spec = {s.name: s for s in deployment_topics(settings).specs()}
    for name in sorted(counts):
        config = spec[name].config if name in spec else {}
        extra = "".join(f" {k}={v}" for k, v in sorted(config.items()))
        click.echo(f"{name}\t{counts[name]} partitions{extra}")
    mismatched = sorted(n for n, c in counts.items()
                        if c != settings.partitions and (n not in spec or spec[n].partitions == settings.partitions))
    if mismatched:
        raise TopicError(
            f"topics exist with a partition count other than LEADFLOW_PARTITIONS={settings.partitions}: "
            + ", ".join(f"{n} ({counts[n]})" for n in mismatched)
            + "; the lead table must be co-partitioned with its sources")


@click.command("config")
@config_option
@click.option("--policy", "policy_path", metavar="P", type=click.Path(dir_okay=False), default=None,
              help="Policy TOML file (default $LEADFLOW_POLICY, else the built-in defaults).")
def config_command(config_file: str | None, policy_path: str | None) -> None:
    """Validate the configuration (environment and file) and the policy; print them, secrets hidden."""
    from lifecycle.policy import Policy
    from schemas.policy_file import load_policy

    settings = load_settings(config_file=config_file, policy=policy_path)
    policy = load_policy(settings.policy) if settings.policy else Policy()  # bad: PolicyError, exit 2
    click.echo(repr(settings))
    click.echo(f"policy {policy.source}: version {policy.policy_version}")
