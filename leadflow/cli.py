"""The ``leadflow`` command line.

Exit status: 0 on success, 2 on bad usage or a bad policy, 1 on any other failure, 128 + the signal
when SIGINT, SIGTERM or SIGHUP stopped ``replay``, ``produce`` or ``report`` (130, 143, 129); every
failure prints one line on standard error.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

import click

from lifecycle.calendar import EARLIEST_MS, LATEST_MS
from lifecycle.errors import ConfigError, LeadflowError, PolicyError
from lifecycle.policy import Policy
from schemas.policy_file import load_policy
from schemas.secrets import redact_text
from schemas.wire import format_time, parse_time

EXIT_FAILURE = 1
EXIT_USAGE = 2
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Stopped(BaseException):
    """SIGINT, SIGTERM or SIGHUP arrived: unwinds like Ctrl-C (every ``finally`` runs: temporary files
    go, locks are released), caught by nothing but ``main``, which exits with 128 + the signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _stop_on_signals() -> None:
    """SIGTERM and SIGHUP stop the command as SIGINT does; a second signal during the clean-up is ignored."""

    def stop(signum: int, frame: Any) -> None:
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        raise Stopped(signum)

    for sig in STOP_SIGNALS:
        signal.signal(sig, stop)


def _policy(path: str | None) -> Policy:
    return load_policy(path) if path else Policy()


def _time(value: str | None, option: str) -> int | None:
    if value is None:
        return None
    try:
        ms = parse_time(value)
    except ValueError:
        raise click.BadParameter(f"not an RFC 3339 time with offset: {value!r}", param_hint=option)
    if not EARLIEST_MS <= ms <= LATEST_MS:
        raise click.BadParameter(f"{value!r} is outside {format_time(EARLIEST_MS)} .. {format_time(LATEST_MS)}",
                                 param_hint=option)
    return ms


def _inputs(files: tuple[str, ...]) -> None:
    """Every FILE readable before anything starts (exit status 2 otherwise)."""
    from leadflow.replay import Source

    for name in files:
        problem = Source(name).problem()
        if problem is not None:
            raise click.BadParameter(problem, param_hint="FILE")


def _option(name: str, value: str | None, flag: str) -> Any:
    """A command-line value checked as its LEADFLOW_* variable is (``streams.config``)."""
    if value is None:
        return None
    from streams.config import parse_option

    try:
        return parse_option(name, value)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint=flag) from None


policy_option = click.option(
    "--policy", "policy_path", metavar="P", type=click.Path(dir_okay=False), help="Policy TOML file."
)
broker_option = click.option(
    "--broker", metavar="URL", help="Kafka bootstrap (host:port); default $LEADFLOW_BROKER, else embedded."
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="leadflow")
def cli() -> None:
    """leadflow: the neutral referee between marketing and sales."""


@cli.command()
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
@policy_option
@click.option("--out", "out_dir", default="./leadflow-out", show_default=True, type=click.Path(file_okay=False))
@click.option("--until", metavar="TIME", help="Move the clock to TIME (RFC 3339) after the last event.")
@click.option("--show/--no-show", default=None, help="Print every stage change and alert (default: small inputs).")
@click.option("--sql", "sql_url", metavar="URL", help="Also write to a SQL sink: sqlite:///file.db or postgresql://...")
@click.option("--webhook", "webhook_url", metavar="URL",
              help="Also POST every alert there (HMAC secret from $LEADFLOW_WEBHOOK_SECRET).")
@click.option("--jobs", type=click.IntRange(1, 64), default=None, metavar="N",
              help="Processes sharing the leads, same output byte for byte (default: the cores, on inputs "
                   "of 8 MB and more; 1 with standard input, --show, --sql or --webhook).")
def replay(files: tuple[str, ...], policy_path: str | None, out_dir: str, until: str | None, show: bool | None,
           sql_url: str | None, webhook_url: str | None, jobs: int | None) -> None:
    """Run the engine over JSON-lines event files (- is standard input) with the event-time clock."""
    from leadflow import replay_view

    _stop_on_signals()
    until_ms = _time(until, "--until")
    _inputs(files)
    _option("sql_url", sql_url, "--sql")
    _option("webhook_url", webhook_url, "--webhook")
    margin = _option("future_margin_ms", os.environ.get("LEADFLOW_FUTURE_MARGIN", "").strip() or None,
                     "LEADFLOW_FUTURE_MARGIN")
    policy = _policy(policy_path)
    from leadflow.replay import ReplayOutput, sinks_for

    with ReplayOutput.open(Path(out_dir), policy_source=policy_path) as out:  # locked; written whole or not at all
        replay_view.run(files, out, policy, until_ms, show, sinks_for(out, sql_url, webhook_url),
                        **({"margin_ms": margin} if margin is not None else {}), jobs=jobs)


@cli.command()
@broker_option
@policy_option
@click.option("--web-port", type=click.IntRange(1, 65535), default=6066, show_default=True, help="HTTP port (lead lookup, health, metrics).")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="Where table state lives.")
def worker(broker: str | None, policy_path: str | None, web_port: int, data_dir: str | None) -> None:
    """The live stream processor; one of many in a consumer group."""
    from leadflow import worker as worker_module

    policy = load_policy(policy_path) if policy_path else None  # None: LEADFLOW_POLICY, else built in
    worker_module.run(broker=broker, policy=policy, policy_path=policy_path, web_port=web_port, data_dir=data_dir)


@cli.command()
@broker_option
@policy_option
@click.option("--duration", type=float, default=90.0, show_default=True, help="Seconds of traffic before the summary.")
@click.option("--rate", type=float, default=40.0, show_default=True, help="Events per second from the generator.")
def demo(broker: str | None, policy_path: str | None, duration: float, rate: float) -> None:
    """Embedded broker + worker + realistic traffic, with the funnel and alerts live."""
    from leadflow import demo as demo_module

    demo_module.run(broker=broker, policy_path=policy_path, duration=duration, rate=rate)


@cli.command()
@click.argument("file", metavar="FILE")
@broker_option
def produce(file: str, broker: str | None) -> None:
    """Publish JSON-lines events to their input topics."""
    from leadflow import produce as produce_module

    _stop_on_signals()
    _inputs((file,))
    produce_module.run(file, broker=broker)


@cli.command()
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
@click.option("--policy", "policy_path", metavar="CURRENT", type=click.Path(dir_okay=False),
              help="The policy in force (default: the built-in one).")
@click.option("--candidate", "candidate_path", metavar="NEW", type=click.Path(dir_okay=False), required=True,
              help="The policy under negotiation.")
@click.option("--until", metavar="TIME", help="Move the clock to TIME (RFC 3339) after the last event.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--html", "html_path", type=click.Path(dir_okay=False), default=None,
              help="Also write an HTML page, the differences highlighted.")
def whatif(files: tuple[str, ...], policy_path: str | None, candidate_path: str, until: str | None, fmt: str,
           html_path: str | None) -> None:
    """Replay the same events under the current and a candidate policy (in parallel) and show what changes."""
    import tempfile

    from rich.console import Console

    from leadflow import whatif as whatif_module

    until_ms = _time(until, "--until")
    for name in files:
        if name != "-" and not os.path.isfile(name):
            raise click.BadParameter(f"no such file: {name}", param_hint="FILE")
    policies = (_policy(policy_path), load_policy(candidate_path))  # a bad one: file, line, key; exit 2
    texts = [(Path(p).read_bytes().decode("utf-8-sig"), p) if p else (None, None)
             for p in (policy_path, candidate_path)]
    with tempfile.TemporaryDirectory(prefix="leadflow-whatif-") as spool:
        if "-" in files:  # both replays read the same events: standard input is read once, into a file
            stdin = Path(spool) / "stdin.jsonl"
            stdin.write_bytes(sys.stdin.buffer.read())
            files = tuple(str(stdin) if name == "-" else name for name in files)
        current, candidate = whatif_module.run(files, texts[0], texts[1], until_ms)
    document = whatif_module.compare(current, candidate, policies)
    if html_path:
        with open(html_path, "w", encoding="utf-8") as f:
            f.write(whatif_module.render_html(document))
    if fmt == "json":
        sys.stdout.write(whatif_module.render_json(document))
    else:
        whatif_module.render_text(document, Console(highlight=False))
        if html_path:
            click.echo(f"HTML written to {click.format_filename(html_path)}")


@cli.group()
def policy() -> None:
    """The policy the workers judge by (SPEC 11)."""


@policy.command("publish")
@click.argument("file", metavar="FILE", type=click.Path(dir_okay=False))
@click.option("--broker", metavar="URL", help="Kafka bootstrap (host:port); default $LEADFLOW_BROKER.")
def policy_publish(file: str, broker: str | None) -> None:
    """Validate FILE and publish it to <app_id>.policy: every worker switches to it within 5 s."""
    from streams.config import kafka_python_kwargs, load_settings
    from streams.policy_topic import publish

    settings = load_settings(broker=broker)
    if settings.broker is None:
        raise ConfigError("no broker: pass --broker or set LEADFLOW_BROKER (publishing to an embedded "
                          "broker would reach no worker)")
    published = publish(settings.broker, settings.topics.policy_spec, file,
                        client_kwargs=kafka_python_kwargs(settings))
    click.echo(f"published {click.format_filename(file)} version {published.version} to "
               f"{settings.topics.policy} at offset {published.offset}")


@cli.command()
@click.argument("source", default="./leadflow-out", metavar="SOURCE")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--html", "html_path", type=click.Path(dir_okay=False), default=None, help="Also write an HTML page with charts.")
def report(source: str, fmt: str, html_path: str | None) -> None:
    """Funnel, time in stage and SLA compliance from replay output (a directory), a SQL URL or kafka://host:port."""
    _stop_on_signals()
    code = report_command(source, fmt, html_path)
    if code:
        sys.exit(code)


def report_command(source: str, fmt: str, html: str | None) -> int:
    """``leadflow report SOURCE [--format text|json] [--html FILE]``; returns the exit status.

    SOURCE: a replay output directory, a ``sqlite:///``/``postgresql://`` URL, or
    ``kafka://host:port[?lifecycle=TOPIC&alerts=TOPIC]``. Failures print one line on standard error.
    """
    from rich.console import Console

    from leadflow.report import build_report, render_json, render_text
    from leadflow.report_html import render_html
    from leadflow.report_sources import load_source
    from leadflow.terminal import plain

    if fmt not in ("text", "json"):
        print(f"leadflow report: --format must be text or json, not {fmt!r}", file=sys.stderr)
        return 2
    try:
        lifecycle, alerts = load_source(source)
        report = build_report(lifecycle, alerts)
        if html:
            with open(html, "w", encoding="utf-8") as f:
                f.write(render_html(report))
        if fmt == "json":
            sys.stdout.write(render_json(report))
        else:
            render_text(report, Console())
            if html:
                print(f"HTML report written to {html}")
        return 0
    except ConfigError as exc:
        print(plain(redact_text(f"leadflow report: {exc}")), file=sys.stderr)
        return 2
    except (LeadflowError, OSError, ValueError, KeyError, TypeError) as exc:
        print(plain(redact_text(f"leadflow report: {type(exc).__name__}: {exc}")), file=sys.stderr)
        return 1


def _register_deployment_commands() -> None:
    from leadflow.cli_deploy import config_command, topics

    cli.add_command(topics)
    cli.add_command(config_command)


_register_deployment_commands()


def main(argv: list[str] | None = None) -> Any:
    """Console-script entry point: one line on stderr and a precise exit status for every failure."""
    prog = "leadflow"
    try:
        return cli.main(args=argv, prog_name=prog, standalone_mode=False)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    except click.exceptions.Abort:
        click.echo(f"{prog}: interrupted", err=True)
        sys.exit(128 + signal.SIGINT)
    except click.UsageError as error:
        command = error.ctx.command_path if error.ctx is not None else prog
        _fail(f"{command}: {error.format_message()} (see {command} --help)", EXIT_USAGE)
    except click.ClickException as error:
        _fail(f"{prog}: {error.format_message()}", EXIT_FAILURE)
    except (PolicyError, ConfigError) as error:
        _fail(f"{prog}: {error}", EXIT_USAGE)
    except LeadflowError as error:
        _fail(f"{prog}: {error}", EXIT_FAILURE)
    except KeyboardInterrupt:
        click.echo(f"{prog}: interrupted", err=True)
        sys.exit(130)
    except Stopped as stop:
        click.echo(f"{prog}: stopped by {signal.Signals(stop.signum).name}", err=True)
        sys.exit(128 + stop.signum)
    except BrokenPipeError:
        sys.exit(EXIT_FAILURE)
    except Exception as error:  # noqa: BLE001 - the last line of defence: one line, status 1
        if os.environ.get("LEADFLOW_DEBUG"):
            raise
        _fail(f"{prog}: {type(error).__name__}: {error} (LEADFLOW_DEBUG=1 shows the traceback)", EXIT_FAILURE)


def _fail(message: str, status: int) -> None:
    """Print ``message`` on standard error and exit: control characters from data are stripped and
    secrets that a library quoted are masked (``schemas.secrets.redact_text``); a multi-line
    message (every bad configuration value) keeps its lines."""
    from leadflow.terminal import plain

    lines = redact_text(message).split("\n")
    click.echo("\n".join(plain(line) for line in lines), err=True)
    sys.exit(status)
