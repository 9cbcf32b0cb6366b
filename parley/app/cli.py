"""The `parley` command: one entry point for every process and tool.

Each sub-command builds its own settings object from the environment and imports its
implementation lazily, so `parley kafka status` does not pay for the processors' imports.
"""

from __future__ import annotations

import asyncio
import sys

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
kafka_app = typer.Typer(no_args_is_help=True, help="A local single-node KRaft broker (Maven jars).")
topics_app = typer.Typer(no_args_is_help=True, help="The topic catalogue.")
app.add_typer(kafka_app, name="kafka")
registry_app = typer.Typer(no_args_is_help=True, help="A local Schema Registry (Apicurio, Confluent API; Maven).")
app.add_typer(registry_app, name="registry")
app.add_typer(topics_app, name="topics")
schemas_app = typer.Typer(no_args_is_help=True, help="The Avro event contract.")
app.add_typer(schemas_app, name="schemas")
projections_app = typer.Typer(no_args_is_help=True, help="SQL projections of the event topics.")
app.add_typer(projections_app, name="projections")
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks, each beside a raw aiokafka baseline.")
app.add_typer(bench_app, name="bench")
privacy_app = typer.Typer(no_args_is_help=True, help="Crypto-shredding: erase, export, retention (docs/PRIVACY.md).")
app.add_typer(privacy_app, name="privacy")


def _fail(msg: str, code: int = 1) -> None:
    typer.secho(msg, fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


@kafka_app.command("up")
def kafka_up(fresh: bool = typer.Option(
        False, help="Start from empty storage (deletes the stopped broker's topics).")) -> None:
    """Fetch the jars if needed, format the storage, start the broker, wait until it answers."""
    from parley import kafka_local
    from parley.settings import BrokerSettings

    s = BrokerSettings()
    try:
        took = kafka_local.up(s, fresh=fresh)
    except kafka_local.BrokerError as e:
        _fail(str(e))
    typer.echo(f"kafka {s.kafka_version} answers on {s.host}:{s.port} (start {took:.1f}s); "
               f"log: {kafka_local.paths(s).log}")


@kafka_app.command("down")
def kafka_down(wipe: bool = typer.Option(False, help="Also delete the broker's storage.")) -> None:
    """Stop the local broker."""
    from parley import kafka_local
    from parley.settings import BrokerSettings

    s = BrokerSettings()
    stopped = kafka_local.down(s)
    if wipe:
        kafka_local.wipe(s)
    typer.echo("kafka stopped" if stopped else "kafka was not running")


@kafka_app.command("status")
def kafka_status() -> None:
    """Exit 0 only when a broker answers on the configured bootstrap servers."""
    from parley import kafka_local
    from parley.settings import BrokerSettings

    s = BrokerSettings()
    ok = kafka_local.answers(s.kafka.bootstrap_servers, 5.0)
    typer.echo(f"kafka at {s.kafka.bootstrap_servers}: {'up' if ok else 'down'}")
    raise typer.Exit(0 if ok else 1)


def _registry_server(port: int):
    from parley.registry_local import RegistryServer
    from parley.settings import BrokerSettings

    return RegistryServer(cache_dir=BrokerSettings().cache_dir, port=port)


_REGISTRY_PORT = typer.Option(8081, help="HTTP port of the local registry.")


@registry_app.command("up")
def registry_up(port: int = _REGISTRY_PORT) -> None:
    """Fetch Apicurio Registry if needed, start it (in memory), wait until it answers."""
    from parley import registry_local

    s = _registry_server(port)
    try:
        took = registry_local.up(s)
    except registry_local.RegistryError as e:
        _fail(str(e))
    typer.echo(f"apicurio registry {s.version} answers at {s.url} (start {took:.1f}s); log: {s.log}\n"
               f"PARLEY_KAFKA__SCHEMA_REGISTRY_URL={s.url}")


@registry_app.command("down")
def registry_down(port: int = _REGISTRY_PORT) -> None:
    """Stop the local registry (its schemas are in memory: they go with it)."""
    from parley import registry_local

    stopped = registry_local.down(_registry_server(port))
    typer.echo("registry stopped" if stopped else "registry was not running")


@registry_app.command("status")
def registry_status(port: int = _REGISTRY_PORT) -> None:
    """Exit 0 only when the local registry answers."""
    from parley import registry_local

    s = _registry_server(port)
    ok = registry_local.answers(s.url, 5.0)
    typer.echo(f"registry at {s.url}: {'up' if ok else 'down'}")
    raise typer.Exit(0 if ok else 1)


@topics_app.command("apply")
def topics_apply() -> None:
    """Create or update every topic of the catalogue (idempotent)."""
    from parley import topics_admin
    from parley.settings import TopicsSettings

    s = TopicsSettings()
    for line in asyncio.run(topics_admin.apply(s.kafka)):
        typer.echo(line)


@topics_app.command("list")
def topics_list() -> None:
    """Show the catalogue with each topic's live configuration."""
    from parley import topics_admin
    from parley.settings import TopicsSettings

    s = TopicsSettings()
    typer.echo(asyncio.run(topics_admin.describe(s.kafka)))


@schemas_app.command("freeze")
def schemas_freeze() -> None:
    """Release the current version of every event schema (history + golden payloads)."""
    from parley.schema_tools import freeze_all

    for line in freeze_all():
        typer.echo(line)


@schemas_app.command("list")
def schemas_list() -> None:
    """Every event type with its current version and wire id."""
    from schemas.catalog import catalog

    for sv in sorted(catalog().current.values(), key=lambda v: v.fullname):
        typer.echo(f"{sv.fullname:45} v{sv.version}  id={sv.local_id}")


@app.command("ingress")
def ingress(
    host: str = typer.Option(None, help="Listen address (PARLEY_HOST)."),
    port: int = typer.Option(None, help="Listen port (PARLEY_PORT)."),
) -> None:
    """The webhook ingress: one route per channel account, agent API, health and metrics."""
    from adapters.accounts import AccountsError
    from adapters.app import serve
    from parley.settings import IngressSettings

    s = IngressSettings()
    s.host = host or s.host
    s.port = port or s.port
    try:
        serve(s)
    except AccountsError as e:
        _fail(f"accounts file {s.accounts_file}: {e}", 2)


@app.command("worker")
def worker() -> None:
    """The stream processors: identity, conversations (threads, enrichment), routing, KPIs."""
    from parley.settings import WorkerSettings
    from streams.runtime.worker import run

    run(WorkerSettings())


egress_app = typer.Typer(help="Outbound messages to every channel's provider (egress/).")
app.add_typer(egress_app, name="egress")


@egress_app.callback(invoke_without_command=True)
def egress(ctx: typer.Context) -> None:
    """Send outbound messages (threaded MessageSent) through each channel's provider API."""
    if ctx.invoked_subcommand is not None:
        return
    from egress.accounts import SendAccountsError
    from egress.main import run
    from parley.settings import EgressSettings

    s = EgressSettings()
    try:
        run(s)
    except SendAccountsError as e:
        _fail(f"accounts file {s.accounts_file}: {e}", 2)


@egress_app.command("emulator")
def egress_emulator(
    host: str = typer.Option("127.0.0.1", help="Listen address."),
    port: int = typer.Option(8900, help="HTTP port: every provider's API."),
    smtp_port: int = typer.Option(8925, help="SMTP port (0: none)."),
    receipts_to: str = typer.Option(None, help="Post the providers' delivery receipts (signed status webhooks) "
                                    "to this ingress base URL, e.g. http://127.0.0.1:8080."),
    accounts: str = typer.Option(None, help="The accounts file the ingress uses (routes and signing secrets "
                                 "of the receipts)."),
) -> None:
    """Provider emulators for tests and the demo: point the egress at them with
    PARLEY_EMULATOR_URL=http://host:port and PARLEY_EMULATOR_SMTP=host:smtp_port."""
    from parley.app.emulator.providers import run

    run(host, port, smtp_port or None, receipts_to=receipts_to, accounts_file=accounts)


@projections_app.command("run")
def projections_run(names: list[str] = typer.Argument(None, help="Projections (default: all).")) -> None:
    """Keep the projections up to date (until interrupted)."""
    from parley.settings import ProjectionSettings
    from projections.runner import run

    run(ProjectionSettings(), names or None)


@projections_app.command("rebuild")
def projections_rebuild(name: str) -> None:
    """Empty one projection and replay its topics from the start."""
    import json

    from parley.settings import ProjectionSettings
    from projections.runner import rebuild

    typer.echo(json.dumps(rebuild(ProjectionSettings(), name).as_dict()))


@app.command("api")
def api() -> None:
    """Read-only HTTP API (JSON + OpenAPI) and the KPI dashboard."""
    from parley.settings import ApiSettings
    from projections.api import serve

    serve(ApiSettings())


@app.command("demo")
def demo(
    scale: float = typer.Option(None, help="Size of the day: 1.0 is about 300 conversations."),
    seed: int = typer.Option(None, help="Seed of the synthetic day."),
    day: str = typer.Option(None, help="Simulated day, YYYY-MM-DD (default: yesterday)."),
    serve: bool = typer.Option(None, help="Keep the dashboard up at the end (default: when in a terminal)."),
    slice_s: int = typer.Option(None, "--slice", help="Simulated seconds per slice of the day: agents, bot and "
                                "customers react to the pipeline's decisions up to a slice late (default 300)."),
) -> None:
    """The main job: broker, topics, ingress, worker, projections, API, and a synthetic day."""
    from parley.app.demo.main import run
    from parley.settings import DemoSettings

    s = DemoSettings()
    s.scale = scale if scale is not None else s.scale
    s.seed = seed if seed is not None else s.seed
    s.day = day or s.day
    s.slice_s = slice_s if slice_s is not None else s.slice_s
    raise typer.Exit(run(s, serve=sys.stdin.isatty() if serve is None else serve))


def _bench(module: str, ctx: typer.Context) -> None:
    import importlib

    importlib.import_module(f"parley.app.bench.{module}").main(list(ctx.args))


# every argument, --help included, goes to the benchmark's own parser
_PASS = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}


@bench_app.command("ingress", context_settings=_PASS)
def bench_ingress(ctx: typer.Context) -> None:
    """Webhook requests/s and request-to-ack latency (parley/app/bench/ingress.py; --help for options)."""
    _bench("ingress", ctx)


@bench_app.command("streams", context_settings=_PASS)
def bench_streams(ctx: typer.Context) -> None:
    """Events/s and latency through the processor chain (parley/app/bench/streams.py)."""
    _bench("streams", ctx)


@bench_app.command("rebuild", context_settings=_PASS)
def bench_rebuild(ctx: typer.Context) -> None:
    """Projection rebuild events/s (parley/app/bench/rebuild.py)."""
    _bench("rebuild", ctx)


@bench_app.command("e2e", context_settings=_PASS)
def bench_e2e(ctx: typer.Context) -> None:
    """Ingress to projection: sustained messages/s and latency (parley/app/bench/e2e.py)."""
    _bench("e2e", ctx)


@bench_app.command("egress", context_settings=_PASS)
def bench_egress(ctx: typer.Context) -> None:
    """Sends/s and event-to-provider latency through the egress, beside a raw HTTP loop (parley/app/bench/egress.py)."""
    _bench("egress", ctx)


def _time(text: str | None) -> int | None:
    if text is None:
        return None
    from projections.query import parse_time

    return parse_time(text)


@privacy_app.command("keygen")
def privacy_keygen() -> None:
    """Print a new master key (base64, 32 bytes) for PARLEY_PRIVACY__MASTER_KEY."""
    from parley.privacy.crypto import new_master_key

    typer.echo(new_master_key())


@privacy_app.command("erase")
def privacy_erase(
    tenant: str, customer: str,
    also: list[str] = typer.Option(None, help="Other customer ids of the same person (merges are found in the "
                                   "projections)."),
    reason: str = typer.Option(None, help="Why (kept in ErasureCompleted; no personal data)."),
    by: str = typer.Option(None, help="Who asked (an operator or ticket id)."),
    at: str = typer.Option(None, help="Event time of the SubjectErased records (ISO or epoch ms; default now)."),
) -> None:
    """Erase a customer: keys destroyed, stream stores told, compacted topics tombstoned,
    projection rows blanked, ErasureCompleted written. Prints what was done (JSON)."""
    import json

    from parley.settings import ProjectionSettings
    from projections.privacy_ops import erase

    s = ProjectionSettings()
    if s.privacy.master_key is None:
        _fail("PARLEY_PRIVACY__MASTER_KEY is not set: nothing was sealed, nothing can be shredded", 2)
    typer.echo(json.dumps(erase(s, tenant, customer, also=also or [], at=_time(at), requested_by=by,
                                reason=reason), indent=2))


@privacy_app.command("export")
def privacy_export(
    tenant: str, customer: str,
    out: str = typer.Option("-", help="File to write (default: standard output)."),
    log: bool = typer.Option(True, help="Also read the customer's events from the log and open them."),
) -> None:
    """Everything held on a customer as JSON, decrypted (right of access)."""
    import json
    from pathlib import Path

    from parley.settings import ProjectionSettings
    from projections.privacy_ops import export

    text = json.dumps(export(ProjectionSettings(), tenant, customer, from_log=log), indent=2, ensure_ascii=False,
                      default=str)
    if out == "-":
        typer.echo(text)
    else:
        Path(out).write_text(text + "\n")


@privacy_app.command("retention")
def privacy_retention(
    as_of: str = typer.Option(None, help="Event time 'now' (ISO or epoch ms; default: each tenant's newest "
                              "event time in the projections)."),
    every: float = typer.Option(0, help="Run again every so many seconds (0: once)."),
) -> None:
    """Shred message content past each tenant's retention (PARLEY_PRIVACY__RETENTION_DAYS,
    PARLEY_PRIVACY__TENANT_RETENTION_DAYS): the day's content keys destroyed, rows blanked."""
    import json
    import time

    from parley.settings import ProjectionSettings
    from projections.privacy_ops import run_retention

    while True:
        typer.echo(json.dumps(run_retention(ProjectionSettings(), as_of=_time(as_of))))
        if every <= 0:
            return
        time.sleep(every)


def _register_kpi() -> None:
    from projections.cli_kpi import main as kpi_main  # its options are the command's interface

    app.command("kpi")(kpi_main)


_register_kpi()


@app.command("readme")
def readme(check: bool = typer.Option(False, help="Exit 1 if the README is stale, write nothing.")) -> None:
    """Regenerate the README's topic table from the topic registry."""
    from parley import readme as gen

    if check:
        stale = gen.render(gen.README.read_text()) != gen.README.read_text()
        typer.echo("README topic table is stale" if stale else "README is current")
        raise typer.Exit(1 if stale else 0)
    typer.echo("README updated" if gen.write() else "README already current")


def main() -> None:
    app(prog_name="parley")


if __name__ == "__main__":
    main()
