"""Command line: ``python -m stg_core COMMAND ...`` (``--help`` on any command).

The output of ``train`` ends with ``run: <id>`` and ``--json`` outputs are stable: other tools
and the app rely on them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

from stg_core.config import ExperimentSpec, TrainConfig
from stg_core.data import DATASET_NAMES, DatasetNotFoundError, dataset_status
from stg_core.datamaps import data_map
from stg_core.models import MODEL_NAMES
from stg_core.store import ArtifactStore
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
    fingerprint = ""
    if dataset == "npz":
        if not args.data_root:
            raise ValueError("--dataset npz needs --data-root pointing at the .npz file")
        fingerprint = hashlib.sha256(Path(args.data_root).read_bytes()).hexdigest()
    return ExperimentSpec(dataset=dataset, tasks=tuple(tasks), train=train, subset=args.subset,
                          test_subset=args.test_subset, data_seed=args.data_seed, preset=preset_name,
                          data_fingerprint=fingerprint, data_root=args.data_root)


def cmd_train(args: argparse.Namespace) -> int:
    from stg_core.training import train_run  # torch import only for commands that train

    spec = _spec_from_args(args)
    store = _store(args)
    run_id = spec.run_id()
    state = store.read_status(run_id).get("state") if store.exists(run_id) else None
    if state == "completed":
        print(f"reusing finished run {run_id}", file=sys.stderr)
    elif state is not None:
        print(f"resuming run {run_id} from epoch {store.read_status(run_id).get('epochs_done', 0)}", file=sys.stderr)
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
    runs = _store(args).list_runs()
    if not runs:
        print(f"no runs in {_store(args).root}")
    for r in runs:
        label = r["preset"] or "custom"
        print(f"{r['id']}  {r['dataset']:14s} {label:18s} {r['n_tasks']:4d} tasks  "
              f"{r['epochs_done']}/{r['epochs']} epochs  {r['state']}")
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
    p.add_argument("--tasks-file", help="JSON task set (see README)")
    p.add_argument("--data-root", help="dataset folder (or the .npz file for --dataset npz)")
    p.add_argument("--download", action="store_true", help="download the dataset when missing and online")
    p.add_argument("--model", default="auto", choices=MODEL_NAMES)
    p.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    p.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    p.add_argument("--lr", type=float, default=TrainConfig.lr)
    p.add_argument("--subset", type=int, default=None, help="training images kept (seeded)")
    p.add_argument("--test-subset", type=int, default=None, help="test images kept (seeded)")
    p.add_argument("--seed", type=int, default=0, help="weights, batch order, dropout")
    p.add_argument("--data-seed", type=int, default=0, help="which subset is drawn")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = with_store(sub.add_parser("runs", help="list runs"))
    p.set_defaults(func=cmd_runs)

    p = with_store(sub.add_parser("datamap", help="data map summary of one task at one epoch"))
    p.add_argument("run", help="run id (or a unique prefix)")
    p.add_argument("--task", required=True)
    p.add_argument("--epoch", type=int, default=None, help="1-based; default the last recorded")
    p.add_argument("--json", action="store_true", help="print JSON with the per-sample arrays")
    p.set_defaults(func=cmd_datamap)
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
