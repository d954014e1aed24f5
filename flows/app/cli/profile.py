"""`scrm profile show`: one customer, by profile id or by an identifier."""

from __future__ import annotations

import sys
from dataclasses import asdict
from enum import StrEnum
from typing import Annotated, Any

import orjson
import typer
from rich.table import Table

from flows.app.cli.common import ConfigOpt, err, out, redis_client, settings_or_exit

__all__ = ["app"]

app = typer.Typer(help="Look up one customer: identifiers, consent, features, scores, decisions.")


class ShowFormat(StrEnum):
    table = "table"
    json = "json"


@app.command("show")
def show(
    profile_id: Annotated[str | None, typer.Argument(help="The profile id.", show_default=False)] = None,
    phone: Annotated[
        str | None, typer.Option(help="A phone, in any way of writing it (read in identity.default_region).")
    ] = None,
    email: Annotated[str | None, typer.Option(help="An email address.")] = None,
    identifier: Annotated[
        str | None, typer.Option(help="NAME:VALUE of any identifier, e.g. openId:o-123 or unionId:u-9.")
    ] = None,
    fmt: Annotated[ShowFormat, typer.Option("--format", "-f", help="Output format.")] = ShowFormat.table,
    decisions: Annotated[
        int, typer.Option(help="How many of the last journey decisions to show.", min=0)
    ] = 10,
    config: ConfigOpt = None,
) -> None:
    """Show one customer as the engine holds them: the profile found by id, or the latest
    profile whose events carried the identifier (matched by its keyed hash, never in
    clear), other profiles that carried it, identifiers (masked), activity, consent and
    suppressions, features, tags, segment, scores and journey decisions. With the
    embedded Valkey and chDB: while the engine is stopped. Exits 1 when nothing is
    found, 2 on a bad argument."""
    from flows.app.profile_view import NotFound
    from flows.app.profile_view import show as view_of
    from sinks.clickhouse import connect

    named = [(n, v) for n, v in (("phone", phone), ("email", email)) if v is not None]
    if identifier is not None:
        name, sep, value = identifier.partition(":")
        if not sep or not name or not value:
            _fail(f"--identifier {identifier!r} is not NAME:VALUE", 2)
        named.append((name, value))
    if len(named) + (profile_id is not None) != 1:
        _fail("name exactly one of: a profile id, --phone, --email, --identifier", 2)
    settings = settings_or_exit(config)
    try:
        ch = connect(settings.clickhouse)
        with redis_client(settings) as client:
            view = view_of(settings, ch, client, profile_id, named[0] if named else None, decisions)
    except NotFound as exc:
        _fail(str(exc), 1)
    except ValueError as exc:
        _fail(str(exc), 2)
    if fmt is ShowFormat.json:
        sys.stdout.buffer.write(orjson.dumps(asdict(view), default=str, option=orjson.OPT_INDENT_2) + b"\n")
        return
    _print(asdict(view))


def _fail(message: str, code: int) -> None:
    err.print(f"[red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def _print(v: dict[str, Any]) -> None:
    head = Table(show_header=False, show_edge=False, box=None)
    head.add_row("profile", f"{v['profile_id']}  (found by {v['found_by']})")
    if v["also"]:
        head.add_row("also carried by", ", ".join(v["also"]))
    if v["person"]:
        head.add_row("person", f"{v['person']}  linked: {', '.join(v['linked'])}")
    head.add_row("identifiers", ", ".join(f"{k} {m}" for k, m in v["identifiers"].items()) or "-")
    seen = f"first {v['first_seen'] or '-'}  last {v['last_seen'] or '-'}"
    head.add_row("events", f"{v['events']} (+{v['engine_events']} by the engine)  {seen}")
    attrs = [
        f"{k} {', '.join(map(str, x)) if isinstance(x, list) else x}" for k, x in v["attributes"].items()
    ]
    head.add_row("attributes", "; ".join(attrs) or "-")
    consent = [f"{c} {'granted' if r['granted'] else 'refused'} {r['at']} {r['version']}".strip()
               for c, r in v["consent"].items()]  # fmt: skip
    head.add_row("consent", "; ".join(consent) or "no record (may be contacted)")
    supp = [f"{c} ({r['kind']} {r['at']})".replace(" )", ")") for c, r in v["suppressed"].items()]
    head.add_row("suppressed", "; ".join(supp) or "-")
    head.add_row(
        "segment", f"{v['segment'] or '-'}  RFM {v['rfm'] or '-'}  as of {v['features_as_of'] or '-'}"
    )
    head.add_row("tags", ", ".join(v["tags"]) or "-")
    head.add_row("scores", "; ".join(f"{m} {s['score']:.3f} (v{s['version']}, {s['as_of']})"
                                      for m, s in v["scores"].items()) or "-")  # fmt: skip
    out.print(head)
    if v["features"]:
        feats = Table("feature", "value", show_edge=False)
        for k, x in v["features"].items():
            feats.add_row(k, x)
        out.print(feats)
    if v["running"]:
        out.print("running journeys:", style="bold")
        for r in v["running"]:
            wait = f", waiting until {r['waiting_until']}" if r["waiting_until"] else ""
            wait += f" (under {r['under']})" if r["under"] else ""
            out.print(f"  {r['journey_id']} v{r['journey_version']}: entered {r['entered']}, next "
                      f"{r['next'] or '(end)'}{wait}", highlight=False)  # fmt: skip
    if v["journeys"]:
        out.print("journeys (latest decision of each):", style="bold")
        for j in v["journeys"]:
            out.print(f"  {j['journey_id']} v{j['journey_version']}: {j['node_id']} {j['status']} at "
                      f"{j['ts']} ({j['decisions']} decisions)", highlight=False)  # fmt: skip
    if v["decisions"]:
        out.print("last decisions:", style="bold")
        for d in v["decisions"]:
            where = f"{d['journey_id']} v{d['journey_version']} {d['node_id']} {d['channel']}/{d['template']}"
            out.print(f"  {d['ts']} {where}: {d['status']} ({d['reason']})", highlight=False)
