"""``curator plugins``: what is registered, of which kind, from which package."""

from __future__ import annotations

import json

import click


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def plugins(as_json: bool) -> None:
    """List every registered filter, task and backend with the plugin and package it came from."""
    from curator.plugins import get_registry

    rows = [
        {"kind": e.kind, "name": e.name, "plugin": e.plugin, "distribution": e.distribution or "-"}
        for e in sorted(get_registry().all(), key=lambda e: (e.kind, e.name))
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    headers = ("kind", "name", "plugin", "distribution")
    widths = [max(len(h), *(len(r[h]) for r in rows)) if rows else len(h) for h in headers]
    for line in [dict(zip(headers, headers)), *rows]:
        click.echo("  ".join(line[h].ljust(w) for h, w in zip(headers, widths)).rstrip())
