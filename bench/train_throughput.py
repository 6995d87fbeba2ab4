#!/usr/bin/env python
"""Training throughput of ``stg_core``'s MultiTaskTrainer on CPU, against a faithful
re-creation of the original STG-MTL training loop, plus the engine's speed knobs.

    python bench/train_throughput.py            # full run, ~5-10 min on 2 cores
    python bench/train_throughput.py --quick    # ~2 min
    python bench/train_throughput.py --n 5000   # smaller "dataset" (also runs ours on a full epoch)

Sections (each prints its figure with its target):

1. ours vs the reference loop (paper CNN, 15 tasks, batch 256, Adam 1e-3): images/s, s/batch and
   s per 50,000-image epoch, for the reference with DataLoader num_workers=0 and =2;
   the ratio is taken against the faster reference. Variants are interleaved round by round.
2. peak RSS of ours and of the reference, each in its own subprocess, on N=--n images.
3. recording overhead: record=True vs record=False, interleaved.
4. task scaling: 10 vs 1,000 tasks (record=True).
5. variants: channels_last on CPU, and torch.compile (in a subprocess, fresh inductor cache).

Benchmarks print figures; nothing here asserts. The machine may be shared: only compare
figures taken within one run (the script interleaves the variants it compares).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torchvision  # noqa: E402

from stg_core.models import build_model  # noqa: E402
from stg_core.training import MultiTaskTrainer, TrainingData, use_mixed_precision  # noqa: E402
from common import cpu_model, interleaved, load_average, paired, usable_cores, verdict  # noqa: E402
from reference_loop import BATCH, CPU, IMAGE_SHAPE, LR, ReferenceLoop  # noqa: E402

EPOCH_IMAGES = 50_000          # extrapolation target: one CIFAR-10-sized epoch
N_TASKS = 15


# ----------------------------------------------------------------------------- helpers

def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def proc_status_mb(key: str) -> float:
    """``VmRSS`` (current) or ``VmHWM`` (peak of this address space) from /proc/self/status."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def reset_hwm() -> bool:
    """Reset this process's VmHWM (Linux >= 4.0: write 5 to /proc/self/clear_refs); ru_maxrss
    reads the same mark, so it restarts too."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def synthetic(n: int, n_tasks: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random uint8 images (n, 32, 32, 3) and (n, n_tasks) binary labels: the first
    min(10, n_tasks) tasks are one-vs-rest of a random 10-class label, the rest are random
    binary tasks with positive rates between 10% and 50%."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n, *IMAGE_SHAPE), dtype=np.uint8)
    classes = rng.integers(0, 10, size=n)
    k = min(10, n_tasks)
    y = np.zeros((n, n_tasks), dtype=np.float32)
    y[:, :k] = classes[:, None] == np.arange(k)[None, :]
    if n_tasks > k:
        rates = rng.uniform(0.1, 0.5, size=n_tasks - k)
        y[:, k:] = rng.random((n, n_tasks - k)) < rates[None, :]
    return x, y


def seeded_model(n_tasks: int, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_model("paper_cnn", IMAGE_SHAPE[2], IMAGE_SHAPE[0], n_tasks)


def ours_trainer(model: nn.Module, x: np.ndarray, y: np.ndarray, **kw) -> MultiTaskTrainer:
    data = TrainingData.from_arrays(x, y, x[:BATCH], y[:BATCH], CPU)
    return MultiTaskTrainer(model, data, lr=LR, batch_size=BATCH, seed=0, **kw)


def fmt_rate(seconds: float, batches: int) -> str:
    per_batch = seconds / batches
    ips = batches * BATCH / seconds
    return f"{per_batch * 1e3:8.1f} ms/batch  {ips:7.0f} img/s  {EPOCH_IMAGES / ips:7.1f} s/epoch(50k)"


# ----------------------------------------------------------------------------- sections
def epoch_timer(trainer: MultiTaskTrainer):
    state = {"epoch": 0}

    def run() -> float:
        state["epoch"] += 1
        t0 = time.perf_counter()
        trainer.train_epoch(state["epoch"])
        return time.perf_counter() - t0
    return run


def ab_section(label_a: str, label_b: str, fn_a, fn_b, repeats: int, nb: int) -> tuple[float, float, tuple]:
    """Interleave two epoch timers; print each one's median; return (median a, median b,
    paired a/b ratios)."""
    times = interleaved({label_a: fn_a, label_b: fn_b}, repeats)
    med = {k: statistics.median(v) for k, v in times.items()}
    width = max(len(label_a), len(label_b))
    for k in (label_a, label_b):
        print(f"    {k:{width}s}: median {med[k]:6.3f} s/epoch of {nb}  {fmt_rate(med[k], nb)}"
              f"  (best round {min(times[k]) / nb * 1e3:.0f} ms/batch)")
    best = min(times[label_a]) / min(times[label_b])
    print(f"    {'':{width}s}  ratio of best rounds {label_a.strip()} / {label_b.strip()}: {best:.3f}x")
    return med[label_a], med[label_b], paired(times[label_a], times[label_b])


def section_ours_vs_reference(args, cfg, x_full: np.ndarray, y_full: np.ndarray) -> None:
    rounds, per_round, warm = cfg["rounds"], cfg["per_round"], cfg["warm"]
    print(f"\n[1] ours vs reference loop: paper_cnn, {N_TASKS} tasks, batch {BATCH}, Adam lr {LR:g}, CPU")
    print(f"    {rounds} interleaved rounds x {per_round} timed batches per variant ({rounds * per_round} each), "
          f"after {warm} warm-up batches; medians over rounds, extrapolated to a {EPOCH_IMAGES:,}-image epoch")
    print("    (num_workers=2: workers restarted each round, first batch untimed, shut down after the round)")
    # ours: one epoch per round, of exactly the round's batches (so the epoch-end p_true copy
    # and train scores are included in the time)
    model = seeded_model(N_TASKS)
    ours_trainer(model, x_full[:warm * BATCH], y_full[:warm * BATCH]).train_epoch(1)      # warm-up
    ours = epoch_timer(ours_trainer(model, x_full[:per_round * BATCH], y_full[:per_round * BATCH]))
    # ours forced to fp32: the defaults use bf16 autocast where the CPU has AMX units
    ours_fp32 = epoch_timer(ours_trainer(seeded_model(N_TASKS), x_full[:per_round * BATCH],
                                         y_full[:per_round * BATCH], amp=False))
    auto_bf16 = use_mixed_precision(torch.device("cpu"), (32, 32, 3))
    print(f"    ours' default precision here: {'bf16 autocast (CPU has AMX)' if auto_bf16 else 'fp32 (no AMX)'}")

    # the reference: one DataLoader iterator over the whole N, kept across rounds (an epoch)
    refs = {w: ReferenceLoop(x_full, y_full, num_workers=w, per_task_recorder=args.ref_per_task_recorder)
            for w in (0, 2)}
    for loop in refs.values():
        loop.new_epoch()
        loop.run(warm)
    refs[2].end_epoch()

    def ref(w: int):
        def run() -> float:
            if w == 0:                  # one iterator across rounds (a long epoch)
                return refs[0].run(per_round)
            # num_workers=2: start the workers and wait for the first batch (untimed), time the
            # next batches (the workers keep loading alongside, as in a steady epoch), then
            # shut the workers down so that no prefetching spills into the next variant's time
            refs[2].new_epoch()
            refs[2].run(1)
            seconds = refs[2].run(per_round)
            refs[2].end_epoch()
            return seconds
        return run

    # diagnostic: the reference's input pipeline alone (Dataset + DataLoader, no training)
    pipe = torch.utils.data.DataLoader(refs[0].dataset, batch_size=BATCH, shuffle=True, num_workers=0)
    pipe_state = {"it": iter(pipe)}

    def pipeline() -> float:
        t0 = time.perf_counter()
        for _ in range(per_round):
            try:
                next(pipe_state["it"])
            except StopIteration:
                pipe_state["it"] = iter(pipe)
                next(pipe_state["it"])
        return time.perf_counter() - t0

    names = {"ours": "ours (MultiTaskTrainer, defaults)", "ours_fp32": "ours with precision fp32",
             0: "reference, DataLoader num_workers=0", 2: "reference, DataLoader num_workers=2",
             "pipe": "(reference input pipeline alone, workers=0)"}
    times = interleaved({"ours": ours, 0: ref(0), "ours_fp32": ours_fp32, 2: ref(2), "pipe": pipeline}, rounds)
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, label in names.items():
        per = " ".join(f"{t / per_round * 1e3:.0f}" for t in times[k])
        print(f"    {label:44s} {fmt_rate(med[k], per_round)}")
        print(f"    {'':44s} rounds, ms/batch: {per}")
    best = {k: min(v) for k, v in times.items()}
    fastest = min((0, 2), key=lambda w: med[w])
    other = 2 if fastest == 0 else 0
    ratio = med[fastest] / med["ours"]
    pm, plo, phi = paired(times[fastest], times["ours"])
    print(f"    fastest reference: num_workers={fastest}")
    print(f"    speed-up ours vs fastest reference: ratio {ratio:.2f}x (target >= 1.5x) {verdict(ratio >= 1.5)}")
    print(f"      per-round ratios: median {pm:.2f}x, range {plo:.2f}..{phi:.2f}x; "
          f"best rounds: {best[fastest] / best['ours']:.2f}x; vs num_workers={other}: "
          f"{med[other] / med['ours']:.2f}x")
    pm32, plo32, phi32 = paired(times[fastest], times["ours_fp32"])
    print(f"    (ours in fp32 vs fastest reference: {med[fastest] / med['ours_fp32']:.2f}x, per-round median "
          f"{pm32:.2f}x, range {plo32:.2f}..{phi32:.2f}x; "
          f"the reference's input pipeline is {med['pipe'] / med[0] * 100:.0f}% of its num_workers=0 batch time)")
    # ours on a full epoch of N images, when that fits the time budget
    est = len(y_full) * med["ours"] / (per_round * BATCH)
    if est <= cfg["full_epoch_budget_s"]:
        del refs, pipe, pipe_state
        gc.collect()
        trainer = ours_trainer(seeded_model(N_TASKS), x_full, y_full)
        t0 = time.perf_counter()
        out = trainer.train_epoch(1)
        sec = time.perf_counter() - t0
        print(f"    ours, one full epoch of N={len(y_full):,}: {sec:.1f} s ({len(y_full) / sec:.0f} img/s; incl. "
              f"epoch-end p_true {tuple(out['p_true'].shape)} {out['p_true'].dtype} host copy)")
        del trainer
    else:
        print(f"    ours, full epoch of N={len(y_full):,}: skipped (estimated {est:.0f} s > budget "
              f"{cfg['full_epoch_budget_s']:.0f} s; pass a smaller --n)")
    gc.collect()


def run_memory_children(args, cfg) -> dict:
    """Run ``--only ours`` and ``--only reference`` (one after the other, before this process
    allocates its own data: on Linux a child's ru_maxrss starts from its parent's RSS at spawn
    time, so a big parent would inflate it; VmHWM, the peak of the child's own address space
    after exec, does not have that problem and is printed beside it)."""
    results = {}
    for which in ("ours", "reference"):
        cmd = [sys.executable, str(Path(__file__).resolve()), "--only", which, "--n", str(args.n),
               "--mem-batches", str(cfg["mem_batches"])]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("@@")]
        if proc.returncode != 0 or not lines:
            results[which] = f"subprocess failed (rc {proc.returncode}): {proc.stderr.strip()[-800:]}"
        else:
            results[which] = json.loads(lines[-1][2:])
    return results


def section_memory(args, cfg, results: dict) -> None:
    print(f"\n[2] peak memory, each implementation in its own subprocess, N={args.n:,}, "
          f"{N_TASKS} tasks, {cfg['mem_batches']} training batches (reference: num_workers=0)")
    ok = {}
    for which in ("ours", "reference"):
        r = results.get(which)
        if not isinstance(r, dict):
            print(f"    {which}: {r}")
            continue
        ok[which] = r
        stages = ", ".join(f"{k} {v:.0f}" for k, v in r["stages"].items())
        print(f"    {which:9s}: peak RSS (ru_maxrss) {r['maxrss_mb']:6.0f} MB; RSS after setup "
              f"{r['setup_end_mb']:.0f} MB, peak while training {r['train_hwm_mb']:.0f} MB, at end {r['end_mb']:.0f} MB")
        print(f"               ru_maxrss after each stage, MB: {stages}")
    if len(ok) == 2:
        o, rf = ok["ours"]["maxrss_mb"], ok["reference"]["maxrss_mb"]
        base = min(ok["ours"]["stages"]["imports"], ok["reference"]["stages"]["imports"])
        print(f"    peak RSS ours / reference: {o:.0f} / {rf:.0f} MB = {o / rf:.2f}x; above the "
              f"{base:.0f} MB import baseline: {o - base:.0f} / {rf - base:.0f} MB "
              f"(target: ours < reference) {verdict(o < rf)}")
        st = ok["ours"]["stages"]
        if st["trainer init"] >= o:
            rest = max(ok["ours"]["train_hwm_mb"], *(v for k, v in st.items() if k not in ("trainer init", "training")))
            print(f"    ours peaks in MultiTaskTrainer.__init__ (+{st['trainer init'] - ok['ours']['setup_end_mb']:.0f} MB "
                  f"over its RSS after setup: the whole training set as float32 for the normalisation "
                  f"statistics); its peak outside that step is {rest:.0f} MB = {rest / rf:.2f}x the reference")


def memory_child(which: str, n: int, n_batches: int) -> None:
    """``--only ours|reference``: build the implementation's full N-sized structures, train a
    few batches, print the peak RSS after each stage as one ``@@{json}`` line."""
    stages = {"imports": peak_rss_mb()}
    x, y = synthetic(n, N_TASKS)
    stages["data (numpy)"] = peak_rss_mb()
    if which == "ours":
        data = TrainingData.from_arrays(x, y, x[:BATCH], y[:BATCH], CPU)
        del x, y                          # the engine keeps only its uint8 tensor
        gc.collect()
        stages["TrainingData"] = peak_rss_mb()
        trainer = MultiTaskTrainer(seeded_model(N_TASKS), data, lr=LR, batch_size=BATCH, seed=0)
        stages["trainer init"] = peak_rss_mb()
        setup_end = proc_status_mb("VmRSS")
        reset = reset_hwm()

        class _Stop(Exception):
            pass

        def stop_after(i: int, total: int) -> None:
            if i >= n_batches:
                raise _Stop
        try:
            trainer.train_epoch(1, stop_after)
        except _Stop:
            pass
        trainer.recorder.epoch_values()   # the per-epoch host copy of p_true
        stages["training"] = peak_rss_mb()
    else:
        loop = ReferenceLoop(x, y, num_workers=0)
        stages["dataset+recorder"] = peak_rss_mb()
        setup_end = proc_status_mb("VmRSS")
        reset = reset_hwm()
        loop.new_epoch()
        loop.run(n_batches)
        stages["training"] = peak_rss_mb()
    train_hwm = proc_status_mb("VmHWM") if reset else float("nan")
    # resetting VmHWM also resets what ru_maxrss reports from then on: the process's peak is
    # the largest ru_maxrss seen at any stage
    print("@@" + json.dumps({"maxrss_mb": max(peak_rss_mb(), *stages.values()), "end_mb": proc_status_mb("VmRSS"), "stages": stages,
                             "setup_end_mb": setup_end, "train_hwm_mb": train_hwm}), flush=True)


def section_recording(cfg, x_full, y_full) -> None:
    repeats, nb = cfg["rec_repeats"], cfg["rec_batches"]
    print(f"\n[3] recording overhead: record=True vs record=False, {repeats} interleaved epochs of {nb} batches each")
    x, y = x_full[:nb * BATCH], y_full[:nb * BATCH]
    on = ours_trainer(seeded_model(N_TASKS), x, y, record=True)
    off = ours_trainer(seeded_model(N_TASKS), x, y, record=False)
    ours_trainer(seeded_model(N_TASKS), x[:2 * BATCH], y[:2 * BATCH]).train_epoch(1)   # warm-up
    m_on, m_off, (pm, plo, phi) = ab_section("record=True", "record=False", epoch_timer(on), epoch_timer(off),
                                             repeats, nb)
    overhead = (m_on / m_off - 1) * 100
    print(f"    overhead {overhead:+.1f}% (ratio of medians {m_on / m_off:.3f}x; per-round ratios median "
          f"{pm:.3f}x, range {plo:.3f}..{phi:.3f}) (target <= 3%) {verdict(overhead <= 3.0)}")


def section_tasks(cfg) -> None:
    repeats, nb = cfg["task_repeats"], cfg["task_batches"]
    print(f"\n[4] task scaling: 10 vs 1,000 tasks, same trunk (paper_cnn), record=True, "
          f"{repeats} interleaved epochs of {nb} batches each")
    fns = {}
    for t in (10, 1000):
        x, y = synthetic(nb * BATCH, t, seed=1)
        fns[t] = epoch_timer(ours_trainer(seeded_model(t), x, y, record=True))
    ours_trainer(seeded_model(10), *synthetic(2 * BATCH, 10)).train_epoch(1)   # warm-up
    m10, m1000, (pm, plo, phi) = ab_section("   10 tasks", " 1000 tasks", fns[10], fns[1000], repeats, nb)
    ratio = m1000 / m10
    print(f"    epoch time 1,000 / 10 tasks: ratio {ratio:.2f}x (per-round ratios median {1 / pm:.2f}x, "
          f"range {1 / phi:.2f}..{1 / plo:.2f}x) (target <= 1.5x) {verdict(ratio <= 1.5)}")
    print(f"    (at N=50,000 x 1,000 tasks the p_true buffer is {50_000 * 1000 * 4 / 2**20:.0f} MB float32 "
          f"and its per-epoch host copy {50_000 * 1000 * 2 / 2**20:.0f} MB float16)")


def section_channels_last(cfg, x_full, y_full) -> None:
    repeats, nb = cfg["cl_repeats"], cfg["cl_batches"]
    print(f"\n[5a] channels_last on CPU: {repeats} interleaved epochs of {nb} batches each "
          f"(engine default on CPU: on for colour images of 32 px and more)")
    x, y = x_full[:nb * BATCH], y_full[:nb * BATCH]
    fns = {cl: epoch_timer(ours_trainer(seeded_model(N_TASKS), x, y, channels_last=cl)) for cl in (False, True)}
    ours_trainer(seeded_model(N_TASKS), x[:2 * BATCH], y[:2 * BATCH], channels_last=True).train_epoch(1)
    m_off, m_on, (pm, plo, phi) = ab_section("channels_last=False", "channels_last=True ", fns[False], fns[True],
                                             repeats, nb)
    r = m_off / m_on
    print(f"    speed-up of channels_last=True over False: {r:.2f}x (per-round median {pm:.2f}x, range "
          f"{plo:.2f}..{phi:.2f}x): {'faster' if r > 1.03 else 'slower' if r < 0.97 else 'no clear difference'}")


def section_compile(args, cfg) -> None:
    print(f"\n[5b] torch.compile(trainer.model) on CPU (subprocess, fresh inductor cache; "
          f"{cfg['cmp_repeats']} interleaved epochs of {cfg['cmp_batches']} batches each)")
    if not cfg["compile"]:
        print("    skipped (--quick or --no-compile); a cold compile costs ~1 min of warm-up on 2 cores")
        return
    env = dict(os.environ)
    cache = tempfile.mkdtemp(prefix="stg_bench_inductor_")
    env["TORCHINDUCTOR_CACHE_DIR"] = cache
    cmd = [sys.executable, str(Path(__file__).resolve()), "--only", "compile",
           "--cmp-repeats", str(cfg["cmp_repeats"]), "--cmp-batches", str(cfg["cmp_batches"])]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    for ln in proc.stdout.splitlines():
        if ln.startswith("    "):
            print(ln)
    if proc.returncode != 0:
        print(f"    compile subprocess failed (rc {proc.returncode}): {proc.stderr.strip()[-1500:]}")
    shutil.rmtree(cache, ignore_errors=True)


def compile_child(repeats: int, nb: int) -> None:
    """``--only compile``: warm-up cost and steady-state speed of ``torch.compile`` (run by
    section 5b with a fresh TORCHINDUCTOR_CACHE_DIR, so the compile is cold)."""
    x, y = synthetic(max(nb, 4) * BATCH, N_TASKS)
    eager = ours_trainer(seeded_model(N_TASKS), x[:nb * BATCH], y[:nb * BATCH])
    eager_timer = epoch_timer(eager)
    eager_timer()                                                  # eager warm-up
    eager_batch = eager_timer() / nb
    # warm-up epoch: 4 batches of 256, 256, 255, 255 images (a 50,000-image epoch also mixes
    # 256- and 255-image batches, so this includes the recompile for the second shape)
    model = seeded_model(N_TASKS)
    n_warm = 4 * BATCH - 2
    warm = ours_trainer(model, x[:n_warm], y[:n_warm])
    compiled = torch.compile(warm.model)
    warm.model = compiled
    t0 = time.perf_counter()
    warm.train_epoch(1)
    t_first = time.perf_counter() - t0
    extra = t_first - 4 * eager_batch
    print(f"    compile warm-up: first epoch of 4 batches (256/256/255/255 images) {t_first:.1f} s "
          f"= ~{extra:.0f} s more than eager", flush=True)
    timed = ours_trainer(model, x[:nb * BATCH], y[:nb * BATCH])
    timed.model = compiled
    m_e, m_c, (pm, plo, phi) = ab_section("eager   ", "compiled", eager_timer, epoch_timer(timed), repeats, nb)
    r = m_e / m_c
    saving = (m_e - m_c) / nb
    pays = "the warm-up never pays back" if saving <= 0 else (
        f"the warm-up pays back after ~{extra / saving:.0f} batches "
        f"(~{extra / saving / (EPOCH_IMAGES / BATCH):.1f} epochs of 50k)")
    print(f"    steady-state speed-up compiled over eager: {r:.2f}x (per-round median {pm:.2f}x, range "
          f"{plo:.2f}..{phi:.2f}x); {pays}", flush=True)


# ----------------------------------------------------------------------------- main
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=EPOCH_IMAGES, help="synthetic training images (default 50000)")
    p.add_argument("--quick", action="store_true", help="short run (~2 min): fewer batches, no compile")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile variant")
    p.add_argument("--ref-per-task-recorder", action="store_true",
                   help="reference recorder updates in a Python loop over tasks (the original is vectorised)")
    p.add_argument("--only", choices=("ours", "reference", "compile"), help=argparse.SUPPRESS)
    p.add_argument("--mem-batches", type=int, default=20, help=argparse.SUPPRESS)
    p.add_argument("--cmp-repeats", type=int, default=8, help=argparse.SUPPRESS)
    p.add_argument("--cmp-batches", type=int, default=4, help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.only in ("ours", "reference"):
        memory_child(args.only, args.n, args.mem_batches)
        return
    if args.only == "compile":
        compile_child(args.cmp_repeats, args.cmp_batches)
        return

    if args.quick:
        cfg = dict(rounds=4, per_round=3, warm=3, full_epoch_budget_s=15, mem_batches=5,
                   rec_repeats=6, rec_batches=3, task_repeats=4, task_batches=3,
                   cl_repeats=4, cl_batches=3, compile=False, cmp_repeats=4, cmp_batches=4)
    else:
        cfg = dict(rounds=8, per_round=5, warm=3, full_epoch_budget_s=120, mem_batches=20,
                   rec_repeats=12, rec_batches=4, task_repeats=8, task_batches=4,
                   cl_repeats=8, cl_batches=4, compile=not args.no_compile, cmp_repeats=8, cmp_batches=4)
    if args.no_compile:
        cfg["compile"] = False
    n_needed = max(cfg["per_round"], cfg["warm"], cfg["rec_batches"], cfg["cl_batches"]) * BATCH
    if args.n < n_needed:
        p.error(f"--n must be at least {n_needed} for this mode")

    t_start = time.perf_counter()
    print("== stg_core training throughput (bench/train_throughput.py) ==")
    print(f"cpu: {cpu_model()}; {os.cpu_count()} logical CPUs, {usable_cores()} usable; "
          f"load average at start {load_average()}")
    print(f"python {platform.python_version()}, torch {torch.__version__}, torchvision {torchvision.__version__}, "
          f"numpy {np.__version__}; torch.get_num_threads() = {torch.get_num_threads()}; device cpu")
    print(f"data: synthetic uint8 images N={args.n:,} x {IMAGE_SHAPE[0]}x{IMAGE_SHAPE[1]}x{IMAGE_SHAPE[2]} (HWC); "
          f"{N_TASKS} binary tasks (10 one-vs-rest of a random 10-class label + {N_TASKS - 10} random); "
          f"batch {BATCH}; model paper_cnn; Adam lr {LR:g}")
    print(f"mode: {'quick' if args.quick else 'full'}; reference recorder: "
          f"{'Python loop over tasks' if args.ref_per_task_recorder else 'vectorised over tasks (as the original)'}")

    busy = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if busy > 0.5:
        print(f"WARNING: 1-min load average {busy:.2f} before starting: other processes are using the CPU. "
              f"With {torch.get_num_threads()} torch threads on {os.cpu_count()} cores, every multi-threaded "
              f"op then waits for a descheduled thread, which inflates small ops most; "
              f"treat ratios as indicative and rerun on an idle machine.")
    memory = run_memory_children(args, cfg)   # first, while this process is still small
    x_full, y_full = synthetic(args.n, N_TASKS)
    section_ours_vs_reference(args, cfg, x_full, y_full)
    section_memory(args, cfg, memory)
    section_recording(cfg, x_full, y_full)
    section_tasks(cfg)
    section_channels_last(cfg, x_full, y_full)
    section_compile(args, cfg)
    print(f"\ntotal bench time {time.perf_counter() - t_start:.0f} s; load average at end {load_average()}")


if __name__ == "__main__":
    main()
