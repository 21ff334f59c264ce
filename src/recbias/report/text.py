"""The report as Markdown, and each table as CSV and as a LaTeX ``booktabs`` table.

Example::

    markdown = render_markdown(report)      # figures as relative links (figures/<name>.png)
    table_csv(table)                        # raw values: floats at full precision, None empty
    table_latex(table, "quickstart-accuracy")   # \\begin{table} ... \\toprule ... \\end{table}
"""

from __future__ import annotations

import csv
import io

from recbias.report.document import Entry, Report
from recbias.report.format import fmt_cell, is_number
from recbias.report.sections import Table

_LATEX = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "Δ": r"$\Delta$",
    "±": r"$\pm$",
    "−": r"$-$",
    "—": "---",
    "–": "--",
    "≤": r"$\leq$",
    "≥": r"$\geq$",
    "×": r"$\times$",
}


def latex_escape(text: str) -> str:
    """Text safe inside a LaTeX tabular/caption (special characters and common symbols)."""
    return "".join(_LATEX.get(ch, ch) for ch in text)


def _latex_cell(value: object) -> str:
    text = latex_escape(fmt_cell(value))
    # A cell starting with '[' after '\\' would be read as the row-spacing argument.
    return "{}" + text if text.startswith("[") else text


def table_latex(table: Table, label: str) -> str:
    """One ``table`` float with a ``booktabs`` tabular; numeric columns right-aligned."""
    numeric = [
        bool(table.rows) and all(is_number(r[i]) or r[i] is None for r in table.rows)
        for i in range(len(table.columns))
    ]
    spec = "".join("r" if n else "l" for n in numeric)
    lines = [
        f"% {table.name}: written by `recbias report`; needs \\usepackage{{booktabs}}",
        "\\begin{table}[htbp]",
        "  \\centering",
        "  \\small",
        f"  \\caption{{{latex_escape(table.caption)}}}",
        f"  \\label{{tab:{label}}}",
        f"  \\begin{{tabular}}{{{spec}}}",
        "    \\toprule",
        "    " + " & ".join(_latex_cell(c) for c in table.columns) + " \\\\",
        "    \\midrule",
        *("    " + " & ".join(_latex_cell(v) for v in row) + " \\\\" for row in table.rows),
        "    \\bottomrule",
        "  \\end{tabular}",
        "\\end{table}",
    ]
    return "\n".join(lines) + "\n"


def _csv_value(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value) if isinstance(value, float) else value


def table_csv(table: Table) -> str:
    """Header then rows; unformatted values (floats at full precision), None as an empty cell."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(table.columns)
    for row in table.rows:
        writer.writerow([_csv_value(v) for v in row])
    return buf.getvalue()


def _md_cell(value: object) -> str:
    return fmt_cell(value).replace("|", "\\|").replace("\n", " ")


def table_markdown(table: Table) -> str:
    lines = [f"*Table: {table.caption}*", ""]
    lines.append("| " + " | ".join(_md_cell(c) for c in table.columns) + " |")
    lines.append(
        "|" + "".join("---:|" if _numeric(table, i) else "---|" for i in range(len(table.columns)))
    )
    lines += ["| " + " | ".join(_md_cell(v) for v in row) + " |" for row in table.rows]
    return "\n".join(lines)


def _numeric(table: Table, i: int) -> bool:
    return bool(table.rows) and all(is_number(r[i]) or r[i] is None for r in table.rows)


def entry_markdown(entry: Entry, level: int, counter: list[int]) -> str:
    """A section: figures link to ``entry.section.figures[i].file`` (relative to the report)."""
    sec = entry.section
    body = [sec.summary] if sec.summary else []
    body += [table_markdown(t) for t in sec.tables]
    for fig in sec.figures:
        counter[0] += 1
        alt = fig.caption.replace("]", ")").replace("[", "(")
        body.append(f"![{alt}]({fig.file})\n\n*Figure {counter[0]}. {fig.caption}*")
    for code in entry.code:
        body.append(f"{code.caption}\n\n```{code.language}\n{code.text.rstrip()}\n```")
    if entry.collapsed:
        body = ["<details><summary>Show details</summary>", *body, "</details>"]
    head = f'<a id="{entry.anchor}"></a>\n\n{"#" * level} {sec.title}'
    return "\n\n".join([head, *body])


def _toc_markdown(report: Report) -> list[str]:
    lines = [f"- [{e.section.title}](#{e.anchor})" for e in report.overview]
    for part in report.parts:
        lines.append(f"- [{part.title}](#{part.anchor})")
        lines += [f"  - [{e.section.title}](#{e.anchor})" for e in part.entries]
    return lines


def render_markdown(report: Report) -> str:
    counter = [0]
    sources = ", ".join(f"`{p.source}`" for p in report.parts)
    out = [
        f"# {report.title}",
        f"recbias report of {sources}.",
        "## Contents",
        "\n".join(_toc_markdown(report)),
    ]
    out += [entry_markdown(e, 2, counter) for e in report.overview]
    for part in report.parts:
        out.append(f'<a id="{part.anchor}"></a>\n\n## {part.title}\n\nDirectory: `{part.source}`')
        out += [entry_markdown(e, 3, counter) for e in part.entries]
    return "\n\n".join(out) + "\n"
