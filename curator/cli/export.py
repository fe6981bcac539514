"""``curator export``: curated rows as JSONL for TRL, LLaMA-Factory or Fine-tune-CoT.

The text comes from :mod:`curator.formats`, the code the built-in
trainer formats with, and rows are selected as the trainer selects them
(``--where``, weight-0 rows skipped), so exporting and training elsewhere
sees the same examples ``curator train`` would.
"""

from __future__ import annotations

import json

import click
import pyarrow as pa
import pyarrow.compute as pc

from curator.errors import CuratorError
from curator.formats import EXPORT_FORMATS, TEMPLATES, export_record
from curator.io import Source
from curator.outputs import atomic_path, check_output_file
from curator.train.data import row_weights, where_mask


@click.command("export")
@click.argument("file", type=click.Path())
@click.option("--format", "format_", required=True, type=click.Choice(EXPORT_FORMATS), help="Target layout.")
@click.option("--output", required=True, type=click.Path(), help="OUT.jsonl")
@click.option(
    "--template",
    type=click.Choice(TEMPLATES),
    default="natural",
    show_default=True,
    help="Prompt/completion layout for trl-prompt-completion.",
)
@click.option("--where", multiple=True, help="Keep rows where COLUMN=VALUE (or !=, null); repeatable.")
@click.option(
    "--extra", multiple=True, help="Copy this column into each record (e.g. id, weight); repeatable."
)
def export(
    file: str, format_: str, output: str, template: str, where: tuple[str, ...], extra: tuple[str, ...]
) -> None:
    """Write FILE's curated rows as JSONL in a format other trainers read."""
    source = Source.open(file)
    check_output_file(output, inputs=source.files())
    written = skipped = weighted = 0
    with atomic_path(output) as tmp, open(tmp, "w", encoding="utf-8") as out:
        first_row = 1
        for batch in source.checked_batches():
            table = pa.Table.from_batches([batch])
            weights = row_weights(table, file, first_row)  # before --where, so an error names the file's row
            first_row += batch.num_rows
            for clause in where:
                mask = where_mask(table, clause, file)
                table, weights = table.filter(mask), weights[pc.fill_null(mask, False).to_numpy(zero_copy_only=False)]
            missing = [c for c in extra if c not in table.column_names]
            if missing:
                raise CuratorError(
                    f"{file}: --extra column '{missing[0]}' not found (has: {', '.join(table.column_names)})"
                )
            skipped += int((weights == 0).sum())
            weighted += int(((weights != 0) & (weights != 1)).sum())
            for row in table.filter(pa.array(weights > 0)).to_pylist():
                record = export_record(row, format_, template)
                record.update({c: row[c] for c in extra})
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
                written += 1
    note = f", skipped {skipped} weight-0 rows" if skipped else ""
    click.echo(f"wrote {written} records to {output}{note}")
    if weighted and "weight" not in extra:
        click.echo(
            f"note: {weighted} rows have weights other than 1, which {format_} cannot carry (--extra weight keeps them)",
            err=True,
        )
