"""A report as plain blocks, rendered once to Markdown and once to HTML.

Keeping the content separate from its two renderings means the Markdown
and the HTML can never disagree on a number. The HTML is self-contained:
figures are embedded as ``data:`` URIs, styles are inline, and nothing is
fetched, so the file can be mailed or opened offline.
"""

from __future__ import annotations

import base64
import html
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field


def number(value: float | None, digits: int = 3) -> str:
    """A table's number: fixed digits, "—" where there is none."""
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


@dataclass
class Text:
    text: str


@dataclass
class Link:
    """A table cell that links to a file beside the report (a relative path)."""

    text: str
    href: str


Cell = str | Link


@dataclass
class Table:
    headers: Sequence[str]
    rows: Sequence[Sequence[Cell]]


@dataclass
class Figure:
    name: str  # file stem, unique within the report
    png: bytes
    caption: str


Block = Text | Table | Figure


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)


@dataclass
class Document:
    title: str
    sections: list[Section]

    def figures(self) -> list[Figure]:
        return [b for s in self.sections for b in s.blocks if isinstance(b, Figure)]


def to_markdown(document: Document, figure_dir: str) -> str:
    """Markdown with figures linked as ``figure_dir/<name>.png``."""
    lines = [f"# {document.title}", ""]
    for section in document.sections:
        lines += [f"## {section.title}", ""]
        for block in section.blocks:
            if isinstance(block, Text):
                lines += [block.text, ""]
            elif isinstance(block, Table):
                lines += [_md_row(block.headers), _md_row(["---"] * len(block.headers))]
                lines += [_md_row(row) for row in block.rows] + [""]
            else:
                lines += [f"![{block.caption}]({figure_dir}/{block.name}.png)", "", f"*{block.caption}*", ""]
    return "\n".join(lines)


def _md_row(cells: Sequence[Cell]) -> str:
    return "| " + " | ".join(_md_cell(c) for c in cells) + " |"


def _md_cell(cell: Cell) -> str:
    """A Markdown table cell: markup in the data escaped (renderers pass HTML through), lines kept."""
    if isinstance(cell, Link):
        text = html.escape(cell.text, quote=False).replace("[", "\\[").replace("]", "\\]")
        return f"[{text}]({cell.href.replace(' ', '%20')})"
    text = html.escape(cell, quote=False).replace("|", "\\|")
    return "<br>".join(line.strip() for line in text.splitlines()) if "\n" in text else text


_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
td { max-width: 38em; overflow-wrap: anywhere; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f3f3f3; }
figure { margin: 1.5em 0; }
figure img { max-width: 100%; }
figcaption { font-size: 0.85em; color: #555; }
"""


_NUMBER = re.compile(r"^(—|n/a|[-+]?[0-9][0-9.,]*(e[-+]?[0-9]+)?( %)?( \[.*\]| \(.*\))?)$")


def _cell(cell: Cell) -> str:
    """A table cell; numbers (and missing values) align right, line breaks are kept."""
    if isinstance(cell, Link):
        return f'<td><a href="{html.escape(cell.href)}">{html.escape(cell.text)}</a></td>'
    kind = ' class="num"' if _NUMBER.match(cell) else ""
    return f"<td{kind}>{html.escape(cell).replace(chr(10), '<br>')}</td>"


def to_html(document: Document) -> str:
    """One self-contained HTML page: inline style, figures as base64 PNG."""
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(document.title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{esc(document.title)}</h1>",
    ]
    for section in document.sections:
        parts.append(f"<section><h2>{esc(section.title)}</h2>")
        for block in section.blocks:
            if isinstance(block, Text):
                parts.append(f"<p>{esc(block.text)}</p>")
            elif isinstance(block, Table):
                head = "".join(f"<th>{esc(h)}</th>" for h in block.headers)
                body = "".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in block.rows)
                parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
            else:
                data = base64.b64encode(block.png).decode("ascii")
                parts.append(
                    f'<figure id="{esc(block.name)}"><img alt="{esc(block.caption)}" '
                    f'src="data:image/png;base64,{data}"><figcaption>{esc(block.caption)}</figcaption></figure>'
                )
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts)
