"""Read one run directory into a report :class:`~recbias.report.document.Part`.

    part, scores = collect_run(Path("runs/quickstart"), "quickstart", Anchors(), fig_dir)

Whatever is present is used, in this order (absent files are skipped):

* accuracy: ``metrics.json`` (``recbias run``) or ``comparison.json`` (``recbias compare``);
* training curves: ``train_log.jsonl``, or every ``seed-*/<method>/train_log.jsonl`` of a comparison;
* section files (:mod:`recbias.report.sections`): ``audit/audit.json``, then every
  ``sections.json`` / ``*.sections.json`` below the directory (probes, simulations, members);
* reproducibility: ``environment.json`` files and the resolved ``config.toml`` / ``compare.toml``.

A directory with none of these is not a recbias directory: :class:`DataError` names it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from recbias.errors import DataError
from recbias.report.accuracy import MethodScores, comparison_accuracy, run_accuracy
from recbias.report.document import Anchors, Entry, Part
from recbias.report.figures import Curve, training_curves
from recbias.report.format import fmt_ci, fmt_number
from recbias.report.inputs import read_json, read_jsonl, read_toml_text
from recbias.report.reproducibility import reproducibility_entry
from recbias.report.sections import Figure, Section, Table, load_sections
from recbias.run_marker import require_finished

MARKERS = ("metrics.json", "comparison.json", "compare.toml", "train_log.jsonl", "config.toml")
SKIP_DIRS = {"model", "adapter", "checkpoints", "predictions", "figures", "__pycache__"}
TRAIN_CAPTION = (
    "Training loss per logged optimiser step (left) and {val} after each epoch (right). Look for "
    "a loss that falls and levels off and a validation curve that rises: the best validation "
    "epoch is the checkpoint evaluated on the test samples."
)
SCALE_NOTE = " Objectives differ in loss scale (e.g. GDRT reweights groups): compare shapes."


def section_files(run_dir: Path) -> list[Path]:
    """``audit/audit.json`` files first, then ``sections.json`` / ``*.sections.json``, sorted."""
    found = []
    for path in run_dir.rglob("*.json"):
        rel = path.relative_to(run_dir)
        if any(p.startswith(".") or p in SKIP_DIRS for p in rel.parts[:-1]):
            continue
        # RUN/audit/audit.json, or audit.json directly when the audit directory itself is given
        is_audit = rel.parts[-2:] == ("audit", "audit.json") or rel.parts == ("audit.json",)
        if is_audit or path.name == "sections.json" or path.name.endswith(".sections.json"):
            found.append((not is_audit, str(rel), path))
    return [p for *_, p in sorted(found)]


def check_run_dir(run_dir: Path) -> None:
    if not run_dir.exists():
        raise DataError(f"{run_dir}: no such directory")
    kinds = "a recbias run, comparison, audit, probe or simulation directory"
    if not run_dir.is_dir():
        raise DataError(f"{run_dir}: not a directory (expected {kinds})")
    if not any((run_dir / m).is_file() for m in MARKERS) and not section_files(run_dir):
        raise DataError(
            f"{run_dir}: not {kinds}: found none of {', '.join(MARKERS)}, audit/audit.json, "
            "sections.json or *.sections.json"
        )
    require_finished(run_dir)


def _accuracy(
    run_dir: Path, anchor: str, fig_dir: Path
) -> tuple[Section, list[MethodScores]] | None:
    if (run_dir / "comparison.json").is_file():
        path = run_dir / "comparison.json"
        return comparison_accuracy(read_json(path), path, anchor, fig_dir)
    if (run_dir / "metrics.json").is_file() and not _results_dir(run_dir):
        path = run_dir / "metrics.json"
        return run_accuracy(read_json(path), path, anchor, fig_dir)
    return None


def _results_dir(run_dir: Path) -> bool:
    """A probe or simulation directory: its metrics.json holds results, rendered via sections."""
    return (run_dir / "sections.json").is_file()


def read_curve(path: Path) -> Curve:
    """Loss per step and validation metric per epoch; a resumed run's later records win."""
    loss: dict[int, float] = {}
    val: dict[int, float] = {}
    for record in read_jsonl(path):
        event, step = record.get("event"), record.get("step")
        if (
            event == "train"
            and isinstance(step, int)
            and isinstance(record.get("loss"), float | int)
        ):
            loss[step] = float(record["loss"])
        elif event == "epoch" and isinstance(record.get("val_metric"), float | int):
            val[int(record.get("epoch", len(val) + 1))] = float(record["val_metric"])
    steps, epochs = sorted(loss), sorted(val)
    return Curve(steps, [loss[s] for s in steps], epochs, [val[e] for e in epochs])


def _train_logs(run_dir: Path) -> dict[str, Path]:
    """Label → train_log.jsonl: the run's own, or one per comparison member."""
    if (run_dir / "train_log.jsonl").is_file():
        return {run_dir.name: run_dir / "train_log.jsonl"}
    logs = sorted(run_dir.glob("seed-*/*/train_log.jsonl"))
    seeds = {p.parent.parent.name for p in logs}
    return {
        (p.parent.name if len(seeds) == 1 else f"{p.parent.name} {p.parent.parent.name}"): p
        for p in logs
    }


def _val_label(config: Path) -> str:
    if not config.is_file():
        return "validation metric"
    k = read_toml_text(config)[1].get("eval", {}).get("validation_k")
    return f"validation NDCG@{k}" if isinstance(k, int) else "validation metric"


def _run_facts(run_dir: Path) -> Table | None:
    path = run_dir / "metrics.json"
    if not path.is_file() or _results_dir(run_dir):
        return None
    doc = read_json(path)
    rows: list[list[Any]] = []
    for group in ("training", "timing"):
        values = doc.get(group) if isinstance(doc, dict) else None
        for key, value in (values or {}).items():
            rows.append([group, key, value])
    caption = "Training facts and wall-clock timings (seconds) recorded in metrics.json."
    return Table("run_facts", caption, ["group", "key", "value"], rows) if rows else None


def _training(run_dir: Path, anchor: str, fig_dir: Path) -> Section | None:
    logs = _train_logs(run_dir)
    curves = {label: read_curve(path) for label, path in logs.items()}
    curves = {k: c for k, c in curves.items() if c.steps or c.epochs}
    section = Section("training", "Training")
    if curves:
        config = next(iter(logs.values())).parent / "config.toml"
        val = _val_label(config)
        training_curves(curves, val, fig_dir / f"{anchor}.png")
        caption = TRAIN_CAPTION.format(val=val) + (SCALE_NOTE if len(curves) > 1 else "")
        section.figures.append(Figure(str(fig_dir / f"{anchor}.png"), caption))
        steps = {k: c.steps[-1] for k, c in curves.items() if c.steps}
        section.summary = "Last logged optimiser step: " + ", ".join(
            f"{k} {fmt_number(s)}" for k, s in steps.items()
        )
    facts = _run_facts(run_dir)
    section.tables += [facts] if facts else []
    return section if section.figures or section.tables else None


def _check_figures(path: Path, sections: list[Section]) -> None:
    for sec in sections:
        for fig in sec.figures:
            if not (path.parent / fig.file).is_file():
                raise DataError(
                    f"{path}: section '{sec.key}' names figure '{fig.file}', but "
                    f"{path.parent / fig.file} does not exist"
                )


def _section_entries(run_dir: Path, part: Part, anchors: Anchors) -> list[Entry]:
    entries = []
    for path in section_files(run_dir):
        _, sections = load_sections(path)
        _check_figures(path, sections)
        where = path.parent.relative_to(run_dir)
        prefix = str(where.parent if where.name == "audit" else where)
        scope = [] if prefix == "." else [prefix]
        for sec in sections:
            sec.title = ": ".join([*scope, sec.title])
            entries.append(Entry(anchors(part.anchor, *scope, sec.key), sec, path.parent))
    return entries


CODEBOOK_FILES = ("semantic_ids.json", "codebook.json")  # SID-LLM run, recbias genrec


def semantic_id_section(run_dir: Path) -> Section | None:
    """Codebook usage per level and collisions of the run's semantic IDs (None: no SIDs)."""
    path = next((run_dir / n for n in CODEBOOK_FILES if (run_dir / n).is_file()), None)
    if path is None:
        return None
    doc = read_json(path)
    report = doc.get("report", doc)  # semantic_ids.json nests the codebook report
    levels = report.get("levels")
    if not isinstance(levels, list):
        raise DataError(f"{path}: expected a 'levels' list of codebook usage")
    rows = [[i + 1, lv.get("used"), fmt_number(lv.get("usage")), fmt_number(lv.get("perplexity"))]
            for i, lv in enumerate(levels)]  # fmt: skip
    sec = Section("semantic_ids", "Semantic IDs")
    sec.summary = (
        f"{report.get('n_items', '?')} items; {report.get('unique_prefixes', '?')} distinct "
        f"{len(levels)}-level prefixes; {report.get('colliding_items', '?')} items share a prefix "
        f"with another (told apart by the suffix level, up to {report.get('max_suffix', '?')})."
    )
    sec.tables.append(Table("codebook", "Codebook usage per level: codes used, their share of the "
                            "codebook, and the perplexity of the code distribution.",
                            ["level", "codes used", "usage", "perplexity"], rows))  # fmt: skip
    return sec


def _bias_delta(d: Mapping[str, Any]) -> str:
    star = "*" if d["significant"] else ""
    return (
        f"{fmt_ci(d['delta'], d['lo'], d['hi'], signed=True)}, p = {fmt_number(d['p_value'])}{star}"
    )


def comparison_bias_section(run_dir: Path) -> Section | None:
    """The bias table of a comparison (``comparison.json`` → ``bias``; None: none there)."""
    path = run_dir / "comparison.json"
    bias = read_json(path).get("bias") if path.is_file() else None
    if not bias:
        return None
    try:
        k, names = bias["k"], list(next(iter(bias["rows"].values()))["cells"])
        heads = [f"{n}@{k}" for n in names]
        cells = [[name] + [fmt_ci(row["cells"][n]["mean"], row["cells"][n]["lo"],
                                  row["cells"][n]["hi"]) for n in names]
                 for name, row in bias["rows"].items()]  # fmt: skip
        deltas = [[name, row["vs"]] + [_bias_delta(row["delta"][n]) for n in names]
                  for name, row in bias["rows"].items() if row["delta"]]  # fmt: skip
    except (KeyError, TypeError, StopIteration) as exc:
        raise DataError(f"{path}: field 'bias' is malformed ({exc!r})") from None
    sec = Section("comparison_bias", "Bias of the lists")
    seeds = bias.get("n_seeds", 1)
    sec.summary = (
        f"Top-{k} lists of every method on the same {bias.get('n_samples', '?')} test samples "
        f"and {seeds} seed(s): exposure Gini and coverage over the catalog, the share of slots "
        f"outside the short head (Tail), and MGU/DGU over {bias.get('n_groups', '?')} popularity "
        f"groups against the same samples' histories. {bias.get('groups', '')} Intervals: 95% "
        "t-intervals over seeds (none with one seed). p: paired randomisation test over the test "
        f"samples ({bias.get('n_perm', '?')} random swaps of a sample's two lists, the trained "
        "models held fixed); * p < 0.05 and, with several seeds, the t-interval excludes 0."
    )
    sec.tables += [
        Table("bias", "Bias metrics per method: mean [95% t-interval over seeds].",
              ["method", *heads], cells),
        Table("bias_delta", "Δ vs each row's reference: Δ [95% t-interval over seeds], p.",
              ["method", "vs", *(f"Δ {h}" for h in heads)], deltas),
    ]  # fmt: skip
    return sec


def collect_run(
    run_dir: Path, label: str, anchors: Anchors, fig_dir: Path
) -> tuple[Part, list[MethodScores]]:
    """One run directory → (its part of the report, its accuracy rows for the cross-run table)."""
    check_run_dir(run_dir)
    part = Part(anchors(label), label, str(run_dir))
    scores: list[MethodScores] = []
    anchor = anchors(part.anchor, "accuracy")
    accuracy = _accuracy(run_dir, anchor, fig_dir)
    if accuracy is not None:
        part.entries.append(Entry(anchor, accuracy[0], run_dir))
        scores = accuracy[1]
    bias = comparison_bias_section(run_dir)
    if bias is not None:
        part.entries.append(Entry(anchors(part.anchor, "comparison_bias"), bias, run_dir))
    codebook = semantic_id_section(run_dir)
    if codebook is not None:
        part.entries.append(Entry(anchors(part.anchor, "semantic_ids"), codebook, run_dir))
    anchor = anchors(part.anchor, "training")
    training = _training(run_dir, anchor, fig_dir)
    if training is not None:
        part.entries.append(Entry(anchor, training, run_dir))
    part.entries += _section_entries(run_dir, part, anchors)
    repro = reproducibility_entry(run_dir, anchors(part.anchor, "reproducibility"))
    if repro is not None:
        part.entries.append(repro)
    return part, scores
