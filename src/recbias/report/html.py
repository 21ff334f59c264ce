"""One self-contained HTML file: inline CSS, figures as base64 data URIs, no script, no URL.

Example::

    text = render_html(report)      # a Report whose figure files exist
"""

from __future__ import annotations

import base64
import re
from html import escape
from pathlib import Path

from recbias.errors import DataError
from recbias.report.document import Entry, Part, Report
from recbias.report.format import fmt_cell, is_number
from recbias.report.sections import Table

_CI = re.compile(r"([+-]?[\d.e+-]+(?: ± [\d.e+-]+)?) (\[[^\]]+\])")
CSS = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d2330;
       margin: 0 auto; max-width: 1280px; padding: 1rem 1rem 4rem; background: #fff; }
h1 { font-size: 1.8rem; margin: 0 0 .2rem; }
h2 { font-size: 1.4rem; border-bottom: 2px solid #d8dde6; padding-bottom: .2rem; margin-top: 2.4rem; }
h3 { font-size: 1.12rem; margin: 1.6rem 0 .4rem; }
nav { background: #f5f7fa; border: 1px solid #d8dde6; border-radius: 6px; padding: .6rem 1.2rem; }
nav h2 { border: 0; margin: .2rem 0; font-size: 1.1rem; }
nav ol { margin: .2rem 0; padding-left: 1.4rem; } nav a { text-decoration: none; color: #1f5fbf; }
.source, .summary { color: #4a5263; } code { font-size: .9em; }
.table-wrap { overflow-x: auto; margin: .6rem 0 1rem; }  /* wide tables scroll, first column stays */
table { border-collapse: collapse; font-size: .78rem; }
caption { text-align: left; color: #4a5263; padding-bottom: .3rem; caption-side: top; }
th, td { border-bottom: 1px solid #e3e7ee; padding: .2rem .35rem; text-align: left; white-space: nowrap; }
th { white-space: normal; vertical-align: bottom; }
thead th { border-bottom: 2px solid #9aa3b2; background: #f5f7fa; }
th:first-child, td:first-child { position: sticky; left: 0; background: #fff; }
thead th:first-child { background: #f5f7fa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td .ci { color: #6a7283; font-size: .92em; }
figure { margin: .8rem 0 1.4rem; } figure img { max-width: 100%; height: auto; border: 1px solid #e3e7ee; }
figcaption { color: #4a5263; font-size: .9rem; max-width: 900px; }
pre { background: #f5f7fa; border: 1px solid #d8dde6; padding: .6rem; overflow-x: auto; font-size: .78rem; }
details > summary { cursor: pointer; color: #1f5fbf; margin: .3rem 0; }
"""


def data_uri(path: Path) -> str:
    """The image file as a ``data:`` URI (PNG or JPEG, recognised by their magic bytes)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read figure ({exc})") from None
    if raw.startswith(b"\x89PNG\r\n\x1a\n"):
        mime = "image/png"
    elif raw.startswith(b"\xff\xd8\xff"):
        mime = "image/jpeg"
    else:
        raise DataError(f"{path}: figure is not a PNG or JPEG image")
    return f"data:{mime};base64,{base64.b64encode(raw).decode('ascii')}"


def _td(value: object) -> str:
    """A cell; an estimate with its interval (``0.0137 [0.0068, 0.0212]``) on two lines."""
    if is_number(value):
        return f'<td class="num">{escape(fmt_cell(value))}</td>'
    text = fmt_cell(value)
    match = _CI.fullmatch(text)
    if match:
        head, ci = (escape(g) for g in match.groups())
        return f'<td class="num">{head}<br><span class="ci">{ci}</span></td>'
    return f"<td>{escape(text)}</td>"


def table_html(table: Table) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in table.columns)
    body = ["<tr>" + "".join(_td(v) for v in row) + "</tr>" for row in table.rows]
    return (
        f'<div class="table-wrap"><table id="table-{escape(table.name)}">'
        f"<caption>{escape(table.caption)}</caption><thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _figures_html(entry: Entry, counter: list[int]) -> list[str]:
    out = []
    for i, fig in enumerate(entry.section.figures):
        counter[0] += 1
        src = data_uri(entry.figure_path(i))
        out.append(
            f'<figure><img src="{src}" alt="{escape(fig.caption)}">'
            f"<figcaption><b>Figure {counter[0]}.</b> {escape(fig.caption)}</figcaption></figure>"
        )
    return out


def entry_html(entry: Entry, level: int, counter: list[int]) -> str:
    sec = entry.section
    body = [f'<p class="summary">{escape(sec.summary)}</p>'] if sec.summary else []
    body += [table_html(t) for t in sec.tables]
    body += _figures_html(entry, counter)
    for code in entry.code:
        body.append(
            f"<figure><figcaption>{escape(code.caption)}</figcaption>"
            f"<pre><code>{escape(code.text)}</code></pre></figure>"
        )
    content = "\n".join(body)
    if entry.collapsed:
        content = f"<details><summary>Show details</summary>\n{content}\n</details>"
    heading = f"<h{level}>{escape(sec.title)}</h{level}>"
    return f'<section id="{escape(entry.anchor)}">\n{heading}\n{content}\n</section>'


def _toc(report: Report) -> str:
    items = [
        f'<li><a href="#{e.anchor}">{escape(e.section.title)}</a></li>' for e in report.overview
    ]
    for part in report.parts:
        sub = "".join(
            f'<li><a href="#{e.anchor}">{escape(e.section.title)}</a></li>' for e in part.entries
        )
        items.append(f'<li><a href="#{part.anchor}">{escape(part.title)}</a><ol>{sub}</ol></li>')
    return f'<nav id="contents"><h2>Contents</h2><ol>{"".join(items)}</ol></nav>'


def _part_html(part: Part, counter: list[int]) -> str:
    entries = "\n".join(entry_html(e, 3, counter) for e in part.entries)
    return (
        f'<section class="part" id="{escape(part.anchor)}">\n<h2>{escape(part.title)}</h2>\n'
        f'<p class="source">Directory: <code>{escape(part.source)}</code></p>\n{entries}\n</section>'
    )


def render_html(report: Report) -> str:
    counter = [0]  # figure numbers run through the whole report
    overview = [entry_html(e, 2, counter) for e in report.overview]
    parts = [_part_html(p, counter) for p in report.parts]
    sources = ", ".join(f"<code>{escape(p.source)}</code>" for p in report.parts)
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            '<link rel="icon" href="data:,">',  # no favicon request
            f"<title>{escape(report.title)}</title><style>{CSS}</style></head><body>",
            f'<header><h1>{escape(report.title)}</h1><p class="source">recbias report of {sources}</p></header>',
            _toc(report),
            "<main>",
            *overview,
            *parts,
            "</main></body></html>",
            "",
        ]
    )
