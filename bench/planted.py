"""Does each grouping method find a planted answer? ``digits-planted`` over several seeds.

    python bench/planted.py                  # run seeds 0-2, grouping seeds 0-1: about 5 min on 2 CPU cores
    python bench/planted.py --run-seeds 0 --group-seeds 0 --methods stg,tag

The ``digits-planted`` preset: {0,4,6}, {0,4}, {4,6} and {3,8,9}, {3,9}, {8,9}, each with an
exact duplicate (12 tasks). For each run seed the MTL run is trained (15 epochs, the
test suite's setting), then each method groups the tasks into k = 2 groups with each grouping
seed. Printed: ARI with the planted sets, whether every duplicate shares its original's
group, for DMTG the epoch after which its grouping never changed, and how often the split is
recovered (ARI >= 0.8).

    python bench/planted.py --dmtg-fixed 2   # plus DMTG's objective with the grouping held fixed

``--dmtg-fixed R`` also trains, per run seed, DMTG's 2-branch network with the planted grouping
held fixed and with R random groupings that keep every duplicate with its original, and prints
their training loss (mean over epochs and last epoch) and test loss: if the planted grouping
does not score clearly lower, DMTG's objective has nothing to find on this problem.

    python bench/planted.py --problem fashion --methods dmtg --dmtg-fixed 2

``--problem fashion`` is a control for DMTG on which the grouping does matter to its objective:
Fashion-MNIST (its files must be installed), one-vs-rest tasks of the tops {T-shirt/top,
Pullover, Coat, Shirt} and of {Sandal, Sneaker, Bag, Ankle boot}, each duplicated (16 tasks),
on 20,000 training images for 3 epochs. Telling the tops apart takes features the other set
does not use, so a branch that holds one set learns it better than a branch that mixes both.

    python bench/planted.py --problem pairs

``--problem pairs`` removes the label correlation between the sets: each image is two digits
side by side (8x16, the left and the right drawn independently from the digits' own train or
test split; 3,000 training and 1,000 test images, written to a temporary ``.npz``); the tasks
are ``digits-planted``'s positives read on the left digit for one set and on the right digit
for the other, each duplicated. Tasks of different sets are independent, labels and pixels.
With ``--pairs-sets nested`` each set's tasks are {0,4,6}, {0,2,4,6} and {0,4,6,7} (left) and
{3,8,9}, {1,3,8,9} and {3,5,8,9} (right): within a set the tasks share three positives.

    python bench/planted.py --problem pairs --pairs-train 20000 --epochs 5 --feature-dim 8 \
        --methods dmtg --dmtg-params '{"epochs": 30, "alpha_lr": 0.001}'

``--feature-dim N`` gives the run's CNN N units in its last fully connected layer (128 by
default), which DMTG copies into each branch: with few units the sets compete for them, so
the grouping matters to DMTG's objective. ``--pairs-train`` sets the digit pairs' training
images, ``--dmtg-params`` DMTG's parameters (JSON; here the original's single lr, α at the
weights' lr, over more epochs than the run).

    python bench/planted.py --problem pairs --methods stg,tag,grad-tae,dmtg,random \
        --dmtg-params '{"epochs": 150, "alpha_lr": 0.001, "hard": true, "branch_units": 8}'

DMTG's ``branch_units`` narrows its branches alone: the run keeps its 128 units, which TAG,
STG-MTL and Grad-TAE read, while DMTG's tasks compete for 8 units per branch.

    python bench/planted.py --methods dmtg --dmtg-head-start 1

``--dmtg-head-start LEAD`` also runs DMTG, per run seed and grouping seed, with its assignment
logits started LEAD logits in favour of the planted grouping, and of a random grouping that
keeps every duplicate with its original (same set sizes), and prints whether it kept each: a
planted grouping kept more often than random ones is one that DMTG's training prefers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import adjusted_rand_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stg_core.config import ExperimentSpec, TrainConfig, spec_from_preset  # noqa: E402
from stg_core.data import dataset_status  # noqa: E402
from stg_core.grouping import GROUPING_METHODS, GroupingSpec, run_grouping  # noqa: E402
from stg_core.grouping.base import RunContext  # noqa: E402
from stg_core.grouping.dmtg import fixed_assignment_losses  # noqa: E402
from stg_core.models import CNN_FEATURE_DIM  # noqa: E402
from stg_core.planted import PAIRS_SETS, digit_pairs_spec, duplicates_together, with_duplicates  # noqa: E402
from stg_core.store import ArtifactStore  # noqa: E402
from stg_core.tasks import PLANTED_GROUPS  # noqa: E402
from stg_core.training import train_run  # noqa: E402
from common import load_average  # noqa: E402

#: ``--problem fashion``: the two planted sets of Fashion-MNIST classes (one-vs-rest tasks).
FASHION_SETS = (("T-shirt/top", "Pullover", "Coat", "Shirt"), ("Sandal", "Sneaker", "Bag", "Ankle boot"))
DEFAULT_EPOCHS = {"digits": 15, "fashion": 3, "pairs": 15}


def planted_problem(problem: str, epochs: int, seed: int, folder: Path, *, feature_dim: int | None = None,
                    pairs_train: int = 3_000, pairs_sets: str = "planted") -> tuple[ExperimentSpec, dict[str, int]]:
    """The MTL run of ``problem`` (``digits-planted``, the Fashion-MNIST control or the digit
    pairs, ``pairs_train`` training images written in ``folder``, tasks ``PAIRS_SETS[pairs_sets]``)
    with ``feature_dim`` units in the CNN's last layer, and its planted grouping: task name -> group."""
    train = TrainConfig(epochs=epochs, seed=seed, feature_dim=feature_dim)
    if problem == "digits":
        return spec_from_preset("digits-planted", train=train), PLANTED_GROUPS
    if problem == "pairs":
        return digit_pairs_spec(folder / f"digit-pairs-{pairs_train}.npz", epochs=epochs, seed=seed,
                                feature_dim=feature_dim, n_train=pairs_train, sets=pairs_sets)
    tasks, groups = with_duplicates([[(name, (name,)) for name in names] for names in FASHION_SETS])
    return ExperimentSpec(dataset="fashion_mnist", tasks=tasks, train=train, subset=20_000, test_subset=2_000), groups


def random_groupings(names: list[str], planted: np.ndarray, n: int, seed: int) -> list[np.ndarray]:
    """``n`` seeded random groupings ``(n_tasks,)`` with the planted set sizes that keep every
    duplicate ("<name> again") with its original."""
    originals = [i for i, name in enumerate(names) if not name.endswith(" again")]
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        shuffled = dict(zip((names[i] for i in originals), rng.permutation(planted[originals])))
        out.append(np.array([shuffled[name.removesuffix(" again")] for name in names]))
    return out


def dmtg_fixed(store: ArtifactStore, run_id: str, n_random: int, planted_groups: dict[str, int],
               epochs: int | None, weights_from: str, branch_units: int | None = None) -> None:
    """DMTG's 2-branch loss with the planted grouping and ``n_random`` random ones held fixed,
    trained for ``epochs`` (None: the run's) from the weights that ``weights_from`` names, with
    ``branch_units`` units per branch (None: the run's)."""
    ctx = RunContext(store, run_id, "cpu")
    names = list(ctx.task_names)
    planted = np.array([planted_groups[n] for n in names])
    rows = [("planted", planted)] + [(f"random {r}", labels)
                                     for r, labels in enumerate(random_groupings(names, planted, n_random, 0))]
    for label, labels in rows:
        out = fixed_assignment_losses(ctx, labels, epochs=epochs, weights_from=weights_from,
                                      branch_units=branch_units)
        ari = adjusted_rand_score(planted, labels)
        print(f"    DMTG objective, {label:9s} (ARI {ari:5.2f}): train loss mean {np.mean(out['train_loss']):.3f}, "
              f"last epoch {out['train_loss'][-1]:.3f}; test loss {out['test_loss']:.3f}", flush=True)


def dmtg_head_start(store: ArtifactStore, run_id: str, lead: float, planted_groups: dict[str, int], run_seed: int,
                    group_seeds: list[int], dmtg_params: dict | None = None) -> list[tuple[str, bool]]:
    """DMTG (k = 2, ``dmtg_params`` besides the start) started ``lead`` logits towards the
    planted grouping and towards a random one, per grouping seed; returns ``(start, kept)`` for each."""
    names = list(store.load_spec(run_id).task_names)
    planted = np.array([planted_groups[n] for n in names])
    out = []
    for group_seed in group_seeds:
        start_random = random_groupings(names, planted, 1, 1_000 * run_seed + group_seed)[0]
        for label, start in (("planted", planted), ("random", start_random)):
            params = {**(dmtg_params or {}), "start_groups": start.tolist(), "start_lead": lead}
            r = run_grouping(GroupingSpec(run_id, "dmtg", 2, seed=group_seed, params=params), store, device="cpu")
            kept = bool(r.details["start_kept"])
            print(f"run seed {run_seed}  DMTG seed {group_seed} started {lead:g} logits towards the {label:7s} "
                  f"grouping (ARI {adjusted_rand_score(planted, start):5.2f}): kept {'yes' if kept else 'no '}, "
                  f"ARI {adjusted_rand_score(planted, r.labels):6.3f}", flush=True)
            out.append((label, kept))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-seeds", default="0,1,2")
    parser.add_argument("--group-seeds", default="0,1")
    parser.add_argument("--problem", choices=DEFAULT_EPOCHS, default="digits",
                        help="digits-planted, the Fashion-MNIST control for DMTG or the digit pairs (see above)")
    parser.add_argument("--epochs", type=int, default=None, help="MTL epochs (default: 3 fashion, else 15)")
    parser.add_argument("--methods", default=",".join(GROUPING_METHODS))
    parser.add_argument("--dmtg-fixed", type=int, default=0, metavar="R",
                        help="also train DMTG's network with the planted and R random groupings held fixed")
    parser.add_argument("--feature-dim", type=int, default=None, metavar="N",
                        help="units of the run's CNN's last fully connected layer (default 128)")
    parser.add_argument("--pairs-train", type=int, default=3_000, metavar="N",
                        help="training images of --problem pairs (default 3,000)")
    parser.add_argument("--pairs-sets", choices=PAIRS_SETS, default="planted",
                        help="tasks of --problem pairs: digits-planted's positives, or nested ones (see above)")
    parser.add_argument("--dmtg-params", type=json.loads, default={}, metavar="JSON",
                        help="DMTG's parameters, e.g. '{\"epochs\": 30, \"alpha_lr\": 0.001}': for the groupings of "
                             "--methods dmtg and --dmtg-head-start; --dmtg-fixed takes its epochs, weights_from and "
                             "branch_units")
    parser.add_argument("--dmtg-head-start", type=float, default=None, metavar="LEAD",
                        help="also run DMTG started LEAD logits in favour of the planted grouping and of a random one")
    args = parser.parse_args()
    run_seeds = [int(s) for s in args.run_seeds.split(",")]
    group_seeds = [int(s) for s in args.group_seeds.split(",")]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not isinstance(args.dmtg_params, dict):
        parser.error('--dmtg-params must be a JSON object, e.g. {"epochs": 30}')
    try:  # the names checked before any training (the values are checked per run, against its tasks)
        dmtg_params = GroupingSpec("-", "dmtg", 2, params=args.dmtg_params).resolved_params()  # with the defaults
    except ValueError as exc:
        parser.error(f"--dmtg-params: {exc}")
    epochs = DEFAULT_EPOCHS[args.problem] if args.epochs is None else args.epochs
    if args.problem == "fashion" and not (status := dataset_status("fashion_mnist")).available:
        parser.error(f"--problem fashion needs Fashion-MNIST: {status.message}")
    print(f"# {args.problem}, {epochs} epochs, k = 2; run seeds {run_seeds}, grouping seeds {group_seeds}; "
          f"feature units {args.feature_dim or CNN_FEATURE_DIM}; DMTG parameters {json.dumps(args.dmtg_params)}")
    print(f"# {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, load average "
          f"{load_average()}")
    results: dict[str, list[tuple[float, bool]]] = {m: [] for m in methods}
    head_starts: list[tuple[str, bool]] = []
    with tempfile.TemporaryDirectory() as tmp:
        store = ArtifactStore(tmp)
        for run_seed in run_seeds:
            spec, planted_groups = planted_problem(args.problem, epochs, run_seed, Path(tmp),
                                                   feature_dim=args.feature_dim, pairs_train=args.pairs_train,
                                                   pairs_sets=args.pairs_sets)
            run_id = train_run(spec, store)
            if args.dmtg_fixed:
                dmtg_fixed(store, run_id, args.dmtg_fixed, planted_groups, dmtg_params["epochs"],
                           dmtg_params["weights_from"], dmtg_params["branch_units"])
            if args.dmtg_head_start is not None:
                head_starts += dmtg_head_start(store, run_id, args.dmtg_head_start, planted_groups, run_seed,
                                               group_seeds, args.dmtg_params)
            for method in methods:
                for group_seed in group_seeds:
                    params = args.dmtg_params if method == "dmtg" else {}
                    r = run_grouping(GroupingSpec(run_id, method, 2, seed=group_seed, params=params), store,
                                     device="cpu")
                    names = list(r.task_names)
                    ari = adjusted_rand_score([planted_groups[n] for n in names], r.labels)
                    together = duplicates_together(names, r.labels)
                    results[method].append((ari, together))
                    settled = (f"  settled after epoch {r.details['settled_epoch']} of {r.details['epochs']}"
                               if "settled_epoch" in r.details else "")
                    print(f"run seed {run_seed}  {method:8s} seed {group_seed}  ARI {ari:6.3f}  duplicates together "
                          f"{'yes' if together else 'no '}  {r.cost.wall_seconds:6.1f} s{settled}", flush=True)
    if head_starts:
        for start in ("planted", "random"):
            kept = [k for label, k in head_starts if label == start]
            print(f"DMTG started {args.dmtg_head_start:g} logits towards the {start} grouping: kept it in "
                  f"{sum(kept)} of {len(kept)}")
    print(f"\n{'method':8s} {'mean ARI':>8s} {'ARI >= 0.8':>10s} {'duplicates together':>20s}")
    for method, rows in results.items():
        aris = [a for a, _ in rows]
        print(f"{method:8s} {np.mean(aris):8.3f} {sum(a >= 0.8 for a in aris):>6d} / {len(aris):<3d}"
              f"{sum(t for _, t in rows):>12d} / {len(rows)}")


if __name__ == "__main__":
    main()
