"""A report's sections rendered: a self-contained HTML page (plots as PNG data URIs: no network, no script) and a
Markdown summary. Rendering only: the sections are built in ``_sections.py``, the plots in ``_plots.py``."""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

__all__ = ["Section", "markdown_table", "render_html", "render_markdown"]


@dataclass
class Section:
    """One section of a report: what a section builder returns and a renderer writes."""

    title: str
    text: list[str] = field(default_factory=list)  # paragraphs (plain text, escaped on output)
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)
    images: list[tuple[str, bytes]] = field(default_factory=list)  # (caption, PNG)
    missing: list[str] = field(default_factory=list)  # what could not be shown, and why


_CSS = """body{font:14px/1.45 system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:12px}td,th{border:1px solid #ccc;padding:3px 6px}
th{background:#f3f3f3}h2{border-bottom:2px solid #4c72b0;padding-bottom:.2em;margin-top:2em}
.missing{color:#8a5a00;background:#fff7e0;padding:.4em .7em;border-left:4px solid #e0a800}
img{max-width:100%;display:block;margin:.5em 0}code{background:#f3f3f3;padding:1px 4px}"""


def is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


def _flat(df: pd.DataFrame) -> pd.DataFrame:
    return df if isinstance(df.index, pd.RangeIndex) else df.reset_index()


def _html_table(df: pd.DataFrame) -> str:
    return _flat(df).to_html(index=False, float_format=lambda v: f"{v:.3g}", na_rep="—", border=0, escape=True)


def render_html(title: str, sections: list[Section]) -> str:
    body = [f"<h1>{html.escape(title)}</h1>"]
    for section in sections:
        body.append(f"<h2>{html.escape(section.title)}</h2>")
        for paragraph in section.text:
            tag = "code" if paragraph.startswith("autoaccel ") else "span"
            body.append(f"<p><{tag}>{html.escape(paragraph)}</{tag}></p>")
        for caption, table in section.tables:
            body.append(f"<h3>{html.escape(caption)}</h3>{_html_table(table)}")
        for caption, png in section.images:
            data = base64.b64encode(png).decode()
            body.append(f'<img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">')
        for note in section.missing:
            body.append(f'<p class="missing">Not shown: {html.escape(note)}</p>')
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_CSS}</style></head><body>{''.join(body)}</body></html>"
    )


def render_markdown(title: str, sections: list[Section]) -> str:
    lines = [f"# {title}", ""]
    for section in sections:
        lines += [f"## {section.title}", ""]
        for paragraph in section.text:
            lines += [f"`{paragraph}`" if paragraph.startswith("autoaccel ") else paragraph, ""]
        for caption, table in section.tables:
            lines += [f"**{caption}**", "", markdown_table(_flat(table)), ""]
        lines += [f"_{len(section.images)} plot(s) in index.html_", ""] if section.images else []
        lines += [f"> Not shown: {note}" for note in section.missing] + ([""] if section.missing else [])
    return "\n".join(lines)


def markdown_table(df: pd.DataFrame) -> str:
    """``df`` as a GitHub Markdown table (floats to 3 significant digits, a missing value as —)."""

    def cell(value: Any) -> str:
        if is_missing(value):
            return "—"
        return f"{value:.3g}" if isinstance(value, float) else str(value).replace("|", "\\|")

    header = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "|" + "---|" * len(df.columns)
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([header, rule, *rows])
