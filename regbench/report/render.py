"""Write report blocks as Markdown (figures linked) and as one self-contained HTML file
(figures embedded as base64 PNG, tables sortable by clicking a header)."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

import pandas as pd

from regbench.report.content import Block, Bullets, Code, Fold, Heading, Image, Table, Text

INLINE_CODE = re.compile(r"`([^`]+)`")
BOLD = re.compile(r"\*\*(.+?)\*\*")

CSS = """
body { font: 14px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1200px; margin: 2em auto;
       padding: 0 1em; color: #222; }
h1, h2, h3 { line-height: 1.2; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 1.8em; }
code, pre { font: 12px/1.4 ui-monospace, Menlo, Consolas, monospace; background: #f4f4f4; border-radius: 3px; }
code { padding: 0 .25em; } pre { padding: .8em; overflow-x: auto; white-space: pre-wrap; }
table { border-collapse: collapse; font-size: 13px; margin: .5em 0; display: block; overflow-x: auto; }
th, td { padding: .25em .6em; border-bottom: 1px solid #e4e4e4; text-align: right; white-space: nowrap; }
th { background: #f0f0f0; position: sticky; top: 0; cursor: pointer; user-select: none; }
th[data-order="asc"]::after { content: " ▲"; } th[data-order="desc"]::after { content: " ▼"; }
tbody tr:nth-child(even) { background: #fafafa; } tbody tr:hover { background: #eef4fb; }
td:first-child, th:first-child { text-align: left; }
figure { margin: 1em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 13px; } details { margin: .5em 0; } summary { cursor: pointer; }
"""

# Click a header: sort rows by that column, numbers numerically (a cell like "92.1 ± 0.4" sorts by 92.1).
SORT_JS = """
document.querySelectorAll("table.sortable th").forEach((th) => th.addEventListener("click", () => {
  const body = th.closest("table").tBodies[0], col = th.cellIndex, asc = th.dataset.order !== "asc";
  th.closest("tr").querySelectorAll("th").forEach((h) => delete h.dataset.order);
  th.dataset.order = asc ? "asc" : "desc";
  const key = (row) => { const t = row.cells[col].textContent.trim(), x = parseFloat(t); return isNaN(x) ? t : x; };
  const cmp = (a, b) => typeof a === typeof b ? (a < b ? -1 : a > b ? 1 : 0) : (typeof a === "number" ? -1 : 1);
  [...body.rows].sort((a, b) => (asc ? 1 : -1) * cmp(key(a), key(b))).forEach((r) => body.appendChild(r));
}));
"""


# ---------------------------------------------------------------------------- markdown


def _md_cell(value: object) -> str:
    text = "—" if pd.isna(value) else str(value)  # type: ignore[arg-type]
    return text.replace("|", "\\|").replace("\n", " ")


def md_table(frame: pd.DataFrame) -> str:
    rows = [list(map(str, frame.columns)), ["---"] * len(frame.columns)]
    rows += [[_md_cell(v) for v in record] for record in frame.itertuples(index=False)]
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def to_markdown(blocks: list[Block]) -> str:
    parts: list[str] = []
    for block in blocks:
        match block:
            case Heading(text, level):
                parts.append(f"{'#' * level} {text}")
            case Text(text):
                parts.append(text)
            case Bullets(items):
                parts.append("\n".join(f"- {item}" for item in items))
            case Table(frame):
                parts.append(md_table(frame))
            case Image(path, title, caption):
                parts.append(f"![{title}]({path.name})\n\n*{caption}*")
            case Code(text):
                parts.append(f"```bash\n{text}\n```")
            case Fold(summary, inner):
                parts.append(f"**{summary}**\n\n" + to_markdown(list(inner)).rstrip("\n"))
    return "\n\n".join(parts) + "\n"


# ---------------------------------------------------------------------------- html


def inline_html(text: str) -> str:
    escaped = html.escape(text, quote=False)
    return BOLD.sub(r"<strong>\1</strong>", INLINE_CODE.sub(r"<code>\1</code>", escaped))


def _image_html(path: Path, title: str, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(title)}">'
        f"<figcaption>{inline_html(caption)}</figcaption></figure>"
    )


def _html_block(block: Block) -> str:
    match block:
        case Heading(text, level):
            return f"<h{level}>{inline_html(text)}</h{level}>"
        case Text(text):
            return f"<p>{inline_html(text)}</p>"
        case Bullets(items):
            return "<ul>" + "".join(f"<li>{inline_html(item)}</li>" for item in items) + "</ul>"
        case Table(frame):
            return frame.to_html(index=False, border=0, classes="sortable", na_rep="—", escape=True)
        case Image(path, title, caption):
            return _image_html(path, title, caption)
        case Code(text):
            return f"<pre><code>{html.escape(text)}</code></pre>"
        case Fold(summary, inner):
            return f"<details><summary>{inline_html(summary)}</summary>{''.join(map(_html_block, inner))}</details>"
    raise TypeError(f"unknown report block {block!r}")


def to_html(blocks: list[Block], title: str = "regbench report") -> str:
    body = "\n".join(_html_block(block) for block in blocks)
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<style>{CSS}</style></head>\n<body>\n{body}\n<script>{SORT_JS}</script>\n</body></html>\n"
    )


def write_report(blocks: list[Block], out_dir: Path) -> tuple[Path, Path]:
    markdown, page = out_dir / "report.md", out_dir / "report.html"
    markdown.write_text(to_markdown(blocks), encoding="utf-8")
    page.write_text(to_html(blocks), encoding="utf-8")
    return markdown, page
