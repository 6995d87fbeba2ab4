"""Command line: ``python -m stg_core COMMAND ...`` (``--help`` on any command).

The output of ``train`` ends with ``run: <id>`` and ``--json`` outputs are stable: other tools
and the app rely on them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from stg_core.alignment import run_alignment
from stg_core.config import PRECISIONS, ExperimentSpec, TrainConfig, data_fingerprint
from stg_core.data import DATASET_NAMES, MAX_DATA_BYTES, DatasetNotFoundError, dataset_status
from stg_core.datamaps import data_map
from stg_core.locks import JobBusyError, busy_message
from stg_core.models import MODEL_NAMES
from stg_core.store import ArtifactStore, format_bytes
from stg_core.tasks import PRESETS, get_preset, load_task_file


class ProgressBar:
    """One line per epoch on stderr, redrawn in place: bar, batches, elapsed time and ETA."""

    def __init__(self, stream=sys.stderr, width: int = 30) -> None:
        self.stream, self.width = stream, width
        self.start = time.perf_counter()
        self.epoch_start = self.start
        self.epoch = None

    def __call__(self, epoch: int, n_epochs: int, batch: int, n_batches: int) -> None:
        now = time.perf_counter()
        if epoch != self.epoch:
            self.epoch, self.epoch_start = epoch, now
        done = batch / n_batches
        filled = int(self.width * done)
        eta = (now - self.epoch_start) / done * (1 - done) if done > 0 else 0.0
        end = "\n" if batch == n_batches else ""
        tty = self.stream.isatty()
        if not end and not tty:
            return  # a log file gets one line per epoch, not one per batch
        self.stream.write(("\r" if tty else "") + f"epoch {epoch}/{n_epochs} [{'#' * filled}{'.' * (self.width - filled)}] "
                          f"{batch}/{n_batches} batches  {now - self.epoch_start:5.1f}s  eta {eta:5.1f}s{end}")
        self.stream.flush()


def _store(args: argparse.Namespace) -> ArtifactStore:
    return ArtifactStore(args.store)


def cmd_presets(args: argparse.Namespace) -> int:
    for preset in PRESETS.values():
        print(f"{preset.name:18s} {preset.dataset:14s} {len(preset.tasks):3d} tasks  {preset.description}")
        if args.verbose:
            print("    " + ", ".join(t.name for t in preset.tasks))
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    for name in DATASET_NAMES:
        if name == "npz":
            print(f"{'npz':14s} user file    pass --dataset npz --data-root FILE.npz")
            continue
        status = dataset_status(name, args.data_root)
        state = "available" if status.available else "missing"
        where = status.location if status.available else status.message
        print(f"{name:14s} {state:12s} {where}")
    return 0


def _spec_from_args(args: argparse.Namespace) -> ExperimentSpec:
    train = TrainConfig(model=args.model, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                        precision=args.precision, feature_dim=args.feature_dim,
                        seed=args.seed)
    if args.preset:
        preset = get_preset(args.preset)
        if args.dataset and args.dataset != preset.dataset:
            raise ValueError(f"preset {args.preset} is defined on {preset.dataset}, not {args.dataset}")
        dataset, tasks, preset_name = preset.dataset, preset.tasks, preset.name
    else:
        if not (args.dataset and args.tasks_file):
            raise ValueError("give --preset NAME, or --dataset NAME with --tasks-file FILE")
        dataset, tasks, preset_name = args.dataset, load_task_file(args.tasks_file), None
    train.validate()  # settings first: a bad --lr is reported before any file is read
    fingerprint = ""
    if dataset == "npz":
        if not args.data_root:
            raise ValueError("--dataset npz needs --data-root pointing at the .npz file")
        path = Path(args.data_root).expanduser()
        if not path.is_file():
            raise ValueError(f"--data-root {str(path)!r}: no such .npz file")
        size = path.stat().st_size
        if size > MAX_DATA_BYTES:
            raise ValueError(f"--data-root {str(path)!r} is {size} bytes, over the limit MAX_DATA_BYTES={MAX_DATA_BYTES}")
        fingerprint = data_fingerprint(path.read_bytes())
    spec = ExperimentSpec(dataset=dataset, tasks=tuple(tasks), train=train, subset=args.subset,
                          test_subset=args.test_subset, data_seed=args.data_seed, preset=preset_name,
                          data_fingerprint=fingerprint, data_root=args.data_root)
    spec.validate()
    return spec


def cmd_train(args: argparse.Namespace) -> int:
    from stg_core.training import train_run  # torch import only for commands that train

    spec = _spec_from_args(args)
    store = _store(args)
    run_id = spec.run_id()
    status = store.read_status(run_id) if store.exists(run_id) else None
    writer = store.writer_pid(run_id)
    if writer is not None and status is not None and status.get("state") != "completed":
        raise JobBusyError(busy_message(run_id, None, None, writer), writer)  # train_run checks again, locked
    if status is not None and status.get("state") == "completed":
        print(f"reusing finished run {run_id}", file=sys.stderr)
    elif status is not None:
        print(f"resuming run {run_id} from epoch {status.get('epochs_done', 0)}", file=sys.stderr)
    train_run(spec, store, device=args.device, progress=None if args.quiet else ProgressBar(),
              download=args.download)
    rows = store.read_metrics(run_id)
    if rows:
        last = rows[-1]
        print(f"epoch {last['epoch']}: train loss {last['train_loss']:.4f}, test loss {last['test_loss']:.4f}, "
              f"mean test F1 {np.mean(last['test']['f1']):.3f}")
    print(f"run: {run_id}")
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    runs = _store(args).list_runs(disk_usage=True)
    if not runs:
        print(f"no runs in {_store(args).root}")
    for r in runs:
        label = r["preset"] or "custom"
        model = r["model"] if r["feature_dim"] is None else f"{r['model']}/{r['feature_dim']}"
        print(f"{r['id']}  {r['dataset']:14s} {label:18s} {r['n_tasks']:4d} tasks  {model:14s} "
              f"{r['epochs_done']}/{r['epochs']} epochs  {r['state']:11s} {format_bytes(r['disk_bytes']):>9s}")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    from stg_core import jobs

    store = _store(args)
    run_id = store.resolve(args.run)
    freed = jobs.delete(store, run_id, derived_only=args.derived_only)
    what = "evaluations and groupings of run" if args.derived_only else "run"
    print(f"deleted {what} {run_id} ({format_bytes(freed)} freed)")
    return 0


def cmd_gc(args: argparse.Namespace) -> int:
    files, freed = _store(args).collect_garbage(uploads=args.uploads, min_age_seconds=args.min_age_hours * 3600)
    print(f"removed {files} file(s), {format_bytes(freed)} freed")
    return 0


def cmd_datamap(args: argparse.Namespace) -> int:
    store = _store(args)
    run_id = store.resolve(args.run)
    spec = store.load_spec(run_id)
    if args.task not in spec.task_names:
        raise ValueError(f"no task {args.task!r} in run {run_id}; tasks: {', '.join(spec.task_names)}")
    recorded = store.recorded_epochs(run_id)
    epoch = args.epoch if args.epoch is not None else (recorded[-1] if recorded else 0)
    if epoch < 1 or epoch not in recorded:
        raise ValueError(f"epoch {epoch} is not recorded for run {run_id} (recorded: {recorded or 'none'})")
    j = spec.task_names.index(args.task)
    dm = data_map(p[j:j + 1] for p in store.iter_p_true(run_id, epoch))
    conf, var, corr = dm.confidence[0], dm.variability[0], dm.correctness[0]
    summary = {
        "run": run_id, "task": args.task, "epoch": epoch, "n_samples": int(conf.size),
        "confidence": {"mean": float(conf.mean()), "std": float(conf.std()), "min": float(conf.min()),
                       "max": float(conf.max())},
        "variability": {"mean": float(var.mean()), "std": float(var.std()), "min": float(var.min()),
                        "max": float(var.max())},
        "correctness_mean": float(corr.mean()),
    }
    if args.json:
        summary.update(confidence_values=conf.round(5).tolist(), variability_values=var.round(5).tolist(),
                       correctness_values=corr.round(5).tolist())
        print(json.dumps(summary))
        return 0
    print(f"run {run_id}  task {args.task!r}  epoch {epoch}  {conf.size} samples")
    for name in ("confidence", "variability"):
        s = summary[name]
        print(f"  {name:12s} mean {s['mean']:.4f}  std {s['std']:.4f}  min {s['min']:.4f}  max {s['max']:.4f}")
    print(f"  correctness  mean {summary['correctness_mean']:.4f}")
    return 0


def _parse_epochs(text: str | None) -> tuple[int, ...] | None:
    if text is None or text == "all":
        return None
    try:
        return tuple(int(e) for e in text.split(","))
    except ValueError:
        raise ValueError(f"--epochs {text!r}: give 'all' or comma-separated epoch numbers like 1,5,10") from None


def cmd_cluster(args: argparse.Namespace) -> int:
    from stg_core.clustering import TaskClusterer
    from stg_core.run_vectors import load_task_vectors

    store = _store(args)
    run_id = store.resolve(args.run)
    spec = store.load_spec(run_id)
    representation, scaling = args.representation, args.scaling
    vectors = load_task_vectors(store, run_id, _parse_epochs(args.epochs), representation)
    fitted = TaskClusterer(args.k, fuzziness=args.fuzziness, scaling=scaling, random_state=args.seed).fit(vectors)
    memberships, labels = fitted.memberships_, fitted.labels_
    names = list(spec.task_names)
    alignment = run_alignment(store, run_id, labels, args.seed)
    if args.json:
        out = {"run": run_id, "k": args.k, "fuzziness": args.fuzziness, "representation": representation,
               "scaling": scaling, "tasks": names, "memberships": memberships.round(6).tolist(),
               "labels": labels.tolist(), "inertia": float(fitted.inertia_)}
        if alignment is not None:
            out["alignment"] = alignment
        print(json.dumps(out))
        return 0
    print(f"run {run_id}  k={args.k}  F={args.fuzziness}  representation={representation}  scaling={scaling}")
    _print_memberships(names, memberships, labels, alignment)
    return 0


def _print_memberships(names: list[str], memberships: np.ndarray, labels: np.ndarray, alignment: dict | None) -> None:
    """Tasks × clusters table sorted by cluster, then the alignment with known groups."""
    order = sorted(range(len(names)), key=lambda i: (labels[i], -memberships[i, labels[i]], names[i]))
    width = max(len(n) for n in names)
    print(" " * (width + 2) + "cluster " + " ".join(f"{j:>6d}" for j in range(memberships.shape[1])))
    for i in order:
        print(f"{names[i]:<{width}}  {labels[i]:>7d} " + " ".join(f"{m:6.3f}" for m in memberships[i]))
    if alignment is not None:
        c = alignment["chance"]
        print(f"alignment with known groups ({alignment['n_tasks']} tasks): "
              f"ARI {alignment['ari']:.3f} (chance {c['ari']['mean']:.3f}), NMI {alignment['nmi']:.3f} "
              f"(chance {c['nmi']['mean']:.3f}), purity {alignment['purity']:.3f} (chance {c['purity']['mean']:.3f})")


def _parse_params(items: list[str]) -> dict:
    """``["tau=1.5", "epochs=null"]`` -> ``{"tau": 1.5, "epochs": None}`` (values read as JSON,
    else kept as strings)."""
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ValueError(f"--param {item!r}: write NAME=VALUE, e.g. --param affinity_every=5")
        try:
            out[name] = json.loads(value)
        except json.JSONDecodeError:
            out[name] = value
    return out


def cmd_group(args: argparse.Namespace) -> int:
    from stg_core.grouping import GROUPING_METHODS, GroupingSpec, params_class, run_groupings

    store = _store(args)
    run_id = store.resolve(args.run)
    methods = [m.strip() for m in args.method.split(",") if m.strip()]
    unknown = [m for m in methods if m not in GROUPING_METHODS]
    if not methods or unknown:
        raise ValueError(f"unknown method {', '.join(unknown) or repr(args.method)}; use {', '.join(GROUPING_METHODS)}")
    if args.param and len(methods) > 1:
        raise ValueError("--param applies to one method: give --method a single method")
    specs = [GroupingSpec(run_id, m, args.k, seed=args.seed, params=params_class(m).from_dict(_parse_params(args.param)))
             for m in dict.fromkeys(methods)]

    def progress(message: str, step: int, n_steps: int) -> None:
        if not args.quiet:
            print(f"\r[{step}/{n_steps}] {message:40s}", end="\n" if step == n_steps else "", file=sys.stderr,
                  flush=True)

    executor = _executor(args)  # one unit per method; this process writes each grouping
    try:
        results = run_groupings(specs, store, device=args.device, executor=executor, progress=progress)
    finally:
        executor.close()
    for spec, result in zip(specs, results):
        _print_grouping(args, store, run_id, spec, result)
    return 0


def _print_grouping(args: argparse.Namespace, store: Any, run_id: str, spec: Any, result: Any) -> None:
    """One grouping as ``group`` prints it: a JSON line with ``--json``, else a table and its cost."""
    alignment = run_alignment(store, run_id, result.labels, args.seed)
    if args.json:
        out = {"run": run_id, "k": args.k, "grouping_id": spec.grouping_id(), "params": spec.resolved_params(),
               **result.to_json()}
        if alignment is not None:
            out["alignment"] = alignment
        print(json.dumps(out))
        return
    c = result.cost
    print(f"run {run_id}  method={spec.method}  k={args.k}  grouping {spec.grouping_id()}")
    _print_memberships(list(result.task_names), result.memberships, result.labels, alignment)
    print(f"cost: {c.wall_seconds:.2f} s of its own work, {c.models_trained} model(s) trained, "
          f"{c.extra_forward_passes} extra forward / {c.extra_backward_passes} extra backward passes, "
          f"step cost x{c.compute_factor:.2f}"
          + (f", reuses {c.reused_training_seconds:.1f} s of the run's training" if c.reused_training_seconds else ""))
    for warning in result.warnings:
        print(f"warning: {warning}")
    for note in result.notes:
        print(f"note: {note}")


def cmd_evaluate(args: argparse.Namespace) -> int:
    from stg_core.evaluation import METHODS, EvaluationSpec, run_evaluation

    store = _store(args)
    run_id = store.resolve(args.run)
    representation, scaling = args.representation, args.scaling
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    spec = EvaluationSpec(run_id, args.k, fuzziness=args.fuzziness, datamap_epochs=_parse_epochs(args.datamap_epochs),
                          representation=representation, scaling=scaling, methods=methods,
                          combination=args.combination, epochs=args.epochs, seed=args.seed)
    spec.validate(len(store.load_spec(run_id).tasks))

    def progress(message: str, step: int, n_steps: int) -> None:
        if not args.quiet:
            print(f"\r[{step}/{n_steps}] {message:40s}", end="\n" if step == n_steps else "", file=sys.stderr,
                  flush=True)

    executor = _executor(args)
    try:
        results = run_evaluation(spec, store, device=args.device, progress=progress, executor=executor)
    finally:
        executor.close()
    if args.json:
        print(json.dumps(results))
        return 0
    names = results["task_names"]
    done = [m for m in METHODS if m in results["methods"]]
    print(f"run {run_id}  evaluation {results['evaluation_id']}  k={args.k}  F={args.fuzziness}  "
          f"combination={args.combination}")
    print(f"{'method':10s} {'train F1':>9s} {'test F1':>9s} {'models':>7s} {'seconds':>8s}")
    for m in done:
        r = results["methods"][m]
        print(f"{m:10s} {r['mean_f1']['train'][-1]:9.4f} {r['mean_f1']['test'][-1]:9.4f} "
              f"{r['models_trained']:7d} {r['seconds']:8.1f}")
    width = max(len(n) for n in names)
    print("\ntest F1 per task (last epoch)")
    print(f"{'task':<{width}}  " + " ".join(f"{m:>9s}" for m in done))
    for t, name in enumerate(names):
        print(f"{name:<{width}}  " + " ".join(f"{results['methods'][m]['epochs'][-1]['test']['f1'][t]:9.4f}"
                                             for m in done))
    return 0


def executor_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--executor", default="local", choices=("local", "ray"),
                   help="where the independent units run: here, one after the other, or as Ray tasks "
                        "(pip install -r requirements-ray.txt)")
    p.add_argument("--ray-address", default=None,
                   help="with --executor ray: auto (an existing cluster), an address, or local (start one "
                        "here); default env STG_RAY_ADDRESS, else local")


def _executor(args: argparse.Namespace):
    from stg_core.executors import make_executor

    executor = make_executor(args.executor, args.ray_address)
    if args.executor == "ray" and not getattr(args, "quiet", False):
        print(f"running units on {executor.describe()}", file=sys.stderr)
    return executor


def _unit_progress(quiet: bool):
    def progress(message: str, step: int, n_steps: int) -> None:
        if not quiet:
            print(f"[{step}/{n_steps}] {message}", file=sys.stderr, flush=True)
    return progress


def cmd_sweep(args: argparse.Namespace) -> int:
    from stg_core.sweep import parse_seeds, run_sweep

    seeds = parse_seeds(args.seeds)
    args.seed = seeds[0]
    base = _spec_from_args(args)
    store = _store(args)
    executor = _executor(args)
    try:
        record = run_sweep(base, seeds, store, device=args.device, executor=executor,
                           progress=_unit_progress(args.quiet),
                           epoch_progress=None if args.quiet else ProgressBar(), download=args.download)
    finally:
        executor.close()
    if args.json:
        print(json.dumps(record))
        return 0
    for seed in record["seeds"]:
        print(f"seed {seed:4d}  run {record['runs'][str(seed)]}")
    print(f"sweep: {record['id']}")
    return 0


def cmd_sweeps(args: argparse.Namespace) -> int:
    from stg_core.sweep import list_sweeps

    sweeps = list_sweeps(_store(args))
    if not sweeps:
        print(f"no sweeps in {_store(args).root}")
    for s in sweeps:
        spec = s["spec"]
        label = spec.get("preset") or "custom"
        print(f"{s['id']}  {spec['dataset']:14s} {label:18s} {len(s['seeds']):3d} seeds  {s['state']}")
    return 0


def cmd_stability(args: argparse.Namespace) -> int:
    from stg_core.stability import sweep_stability

    report = sweep_stability(_store(args), args.sweep, args.k, fuzziness=args.fuzziness,
                             representation=args.representation, epochs=_parse_epochs(args.epochs),
                             scaling=args.scaling, seed=args.seed)
    out = report.to_json()
    if args.json:
        print(json.dumps(out))
        return 0
    r = len(report.seeds)
    print(f"sweep {report.sweep_id}  {r} seeds  k={args.k}  F={args.fuzziness}  representation={args.representation}")
    print(f"mean pairwise ARI between seeds' groupings: {out['mean_ari']:.3f}")
    width = max(len(n) for n in report.task_names)
    print(f"{'task':<{width}}  consensus  stability")
    for name, group, score in zip(report.task_names, report.consensus, report.stability):
        print(f"{name:<{width}}  {group:9d}  {score:9.3f}")
    for claim in out["claims"]:
        print(f"{claim['title']}: {claim['summary']}")
    return 0


def add_sweep_parsers(sub: Any, with_store: Callable, grouping_options: Callable) -> None:
    """``sweep`` (the ``train`` options, with ``--seeds`` for ``--seed``), ``sweeps`` and ``stability``."""
    p = with_store(sub.add_parser("sweep", help="train one run per seed (reusing finished ones), recorded as a sweep"))
    for action in sub.choices["train"]._actions:  # the train options, declared once there
        if action.dest not in ("help", "seed", "store"):
            p._add_action(action)
    p.add_argument("--seeds", required=True, help="training seeds, e.g. 0-9 or 0,3,5-7")
    p.add_argument("--json", action="store_true", help="print the sweep record")
    executor_options(p)
    p.set_defaults(func=cmd_sweep)

    p = with_store(sub.add_parser("sweeps", help="list seed sweeps"))
    p.set_defaults(func=cmd_sweeps)

    p = with_store(sub.add_parser("stability", help="how stable a sweep's grouping is across seeds"))
    grouping_options(p)  # its positional names a run; here it names the sweep
    run = next(a for a in p._actions if a.dest == "run")
    run.dest, run.metavar, run.help = "sweep", "SWEEP", "sweep id (or a unique prefix)"
    p.add_argument("--epochs", default="all", help="data-map epochs used: all, or e.g. 1,5,10")
    p.set_defaults(func=cmd_stability)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m stg_core", description="STG-MTL Studio engine")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_store(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--store", default=None, help="artifact store folder (env STG_STORE, default cache/)")
        return p

    p = sub.add_parser("presets", help="list task presets and their tasks")
    p.add_argument("-v", "--verbose", action="store_true", help="also list every task")
    p.set_defaults(func=cmd_presets)

    p = sub.add_parser("datasets", help="which datasets are available here, and where")
    p.add_argument("--data-root", default=None)
    p.set_defaults(func=cmd_datasets)

    p = with_store(sub.add_parser("train", help="train an MTL run recording data maps (reuses / resumes)"))
    p.add_argument("--preset", choices=sorted(PRESETS), help="task preset (sets the dataset)")
    p.add_argument("--dataset", choices=DATASET_NAMES)
    p.add_argument("--tasks-file", help="JSON task set (see docs/usage.md)")
    p.add_argument("--data-root", help="dataset folder (or the .npz file for --dataset npz)")
    p.add_argument("--download", action="store_true", help="download the dataset when missing and online")
    p.add_argument("--model", default="auto", choices=MODEL_NAMES)
    p.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    p.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    p.add_argument("--lr", type=float, default=TrainConfig.lr)
    p.add_argument("--precision", default="auto", choices=PRECISIONS,
                   help="auto: bf16 autocast on CUDA, and on CPUs with AMX for colour images >= 32 px")
    p.add_argument("--feature-dim", type=int, default=None,
                   help="units of the CNN's last fully connected layer, the features every task head reads "
                        "(default 128, the paper's); fewer make the tasks compete for them")
    p.add_argument("--subset", type=int, default=None, help="training images kept (seeded)")
    p.add_argument("--test-subset", type=int, default=None, help="test images kept (seeded)")
    p.add_argument("--seed", type=int, default=0, help="weights, batch order, dropout")
    p.add_argument("--data-seed", type=int, default=0, help="which subset is drawn")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = with_store(sub.add_parser("runs", help="list runs (state, epochs, disk usage)"))
    p.set_defaults(func=cmd_runs)

    p = with_store(sub.add_parser("delete", help="delete a run, or only its evaluations and groupings"))
    p.add_argument("run", help="run id (or a unique prefix)")
    p.add_argument("--derived-only", action="store_true",
                   help="keep the run (data maps, checkpoint) and delete its evaluations and groupings")
    p.set_defaults(func=cmd_delete)

    p = with_store(sub.add_parser("gc", help="remove temporary files of killed writers (and unused uploads)"))
    p.add_argument("--uploads", action="store_true", help="also remove uploaded datasets that no run uses")
    p.add_argument("--min-age-hours", type=float, default=1.0,
                   help="keep uploads younger than this (one may be about to be launched)")
    p.set_defaults(func=cmd_gc)

    p = with_store(sub.add_parser("datamap", help="data map summary of one task at one epoch"))
    p.add_argument("run", help="run id (or a unique prefix)")
    p.add_argument("--task", required=True)
    p.add_argument("--epoch", type=int, default=None, help="1-based; default the last recorded")
    p.add_argument("--json", action="store_true", help="print JSON with the per-sample arrays")
    p.set_defaults(func=cmd_datamap)

    def grouping_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("run", help="run id (or a unique prefix)")
        p.add_argument("--k", type=int, required=True, help="number of clusters")
        p.add_argument("--fuzziness", type=float, default=2.0, help="F > 1 (paper: 2); larger = softer")
        p.add_argument("--representation", default="raw", choices=("raw", "standardized", "pattern"),
                       help="task vectors: the paper's raw data maps, standardised per feature, or the "
                            "L2-normalised pattern of (1 - confidence, variability)")
        p.add_argument("--scaling", default="none", choices=("none", "standard"),
                       help="per-feature standardisation of the task vectors before k-means")
        p.add_argument("--seed", type=int, default=0, help="k-means (and random grouping) seed")
        p.add_argument("--json", action="store_true")

    p = with_store(sub.add_parser("cluster", help="soft task clustering of a run's data maps"))
    grouping_options(p)
    p.add_argument("--epochs", default="all", help="data-map epochs used: all, or e.g. 1,5,10")
    p.set_defaults(func=cmd_cluster)

    p = with_store(sub.add_parser("group", help="group a run's tasks with STG-MTL, TAG, Grad-TAE, DMTG or at random"))
    p.add_argument("run", help="run id (or a unique prefix)")
    p.add_argument("--method", required=True,
                   help="stg, tag, grad-tae, dmtg or random; several, comma-separated, run as independent units "
                        "(on Ray with --executor ray), one output each")
    p.add_argument("--k", type=int, required=True, help="number of groups")
    p.add_argument("--seed", type=int, default=0, help="the method's seed")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="a method parameter (repeatable), e.g. --param affinity_every=5 (see docs/methods.md)")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true",
                   help="the same shape as cluster --json, plus cost, notes, affinity (one line per method)")
    p.add_argument("-q", "--quiet", action="store_true")
    executor_options(p)
    p.set_defaults(func=cmd_group)

    p = with_store(sub.add_parser("evaluate", help="MTL / STL / STG-MTL / random grouping F1 on a run"))
    grouping_options(p)
    p.add_argument("--methods", default="mtl,stl,stg,stg-hard,random")
    p.add_argument("--combination", default="probabilities", choices=("probabilities", "logits"),
                   help="STG-MTL ensemble: weighted probabilities (paper text) or weighted logits (original code)")
    p.add_argument("--epochs", type=int, default=None, help="training epochs per model (default: the run's)")
    p.add_argument("--datamap-epochs", default="all", help="data-map epochs used for the clustering")
    p.add_argument("--device", default="auto")
    p.add_argument("-q", "--quiet", action="store_true")
    executor_options(p)
    p.set_defaults(func=cmd_evaluate)
    add_sweep_parsers(sub, with_store, grouping_options)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, DatasetNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
