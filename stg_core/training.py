"""The fast multi-task training loop, and a resumable training run that records data maps.

Speed choices (airbench-style; ``bench/train_throughput.py`` times them):

- the whole training set lives on the device as uint8 ``(N, H, W, C)`` — as loaded, so on the
  CPU it is not even copied — and each batch is gathered, viewed as ``(B, C, H, W)`` (already
  in channels_last memory order) and normalised; no Dataset, no DataLoader, no per-image
  transform;
- each epoch draws one seeded permutation and slices it into batches of sample indices;
- one vectorised BCE over all heads (``pos_weight = neg/pos`` per task, from the labels),
  weighted per task — never a Python loop over tasks or samples;
- p_true goes into a preallocated device buffer indexed by sample id; one host copy per epoch;
- metrics are counted with tensor ops for all tasks at once (scikit-learn's f1_score would be
  one call per task: at 1,000 tasks that loop costs more than the epoch's bookkeeping).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from stg_core.config import ExperimentSpec
from stg_core.data import Dataset, load_dataset
from stg_core.recording import PTrueRecorder, RunRecorder
from stg_core.models import MultiHeadNet, build_model, resolve_model_name
from stg_core.store import ArtifactStore
from stg_core.tasks import Task, TaskLabels, apply_flips, build_labels


def resolve_device(name: str = "auto") -> torch.device:
    """``"auto"`` → CUDA when available, else CPU; ``"cuda"`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but no CUDA GPU is available (use --device cpu or auto)")
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise ValueError(f"unknown device {name!r}; use auto, cpu or cuda")
    return torch.device(name)


def images_to_tensor(x: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 images ``(N, H, W, C)`` → uint8 device tensor ``(N, H, W, C)``; on the CPU it
    shares the array's memory (the trainer never writes to it)."""
    x = np.ascontiguousarray(x)
    if not x.flags.writeable:  # torch warns on read-only memory; it is only ever read here
        x = x.copy()
    return torch.from_numpy(x).to(device)


def pos_weights(labels: np.ndarray) -> np.ndarray:
    """``neg / pos`` per task from a label matrix ``(N, n_tasks)`` (the original hard-codes these)."""
    pos = labels.sum(axis=0).astype(np.float64)
    return (len(labels) - pos) / np.maximum(pos, 1.0)


def binary_counts(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-task ``[tp, fp, fn, tn]`` counts ``(4, n_tasks)`` of boolean ``(B, n_tasks)`` tensors."""
    t = target.bool()
    return torch.stack([(pred & t).sum(0), (pred & ~t).sum(0), (~pred & t).sum(0), (~pred & ~t).sum(0)])


def scores_from_counts(counts: np.ndarray) -> dict[str, list[float]]:
    """Accuracy, F1 and balanced accuracy per task from ``(4, n_tasks)`` counts.

    F1 = 2tp / (2tp + fp + fn), 0 when there is no positive prediction and no positive label
    (scikit-learn's ``zero_division=0``): a metric is never NaN.
    """
    tp, fp, fn, tn = counts.astype(np.float64)
    n = tp + fp + fn + tn
    f1 = np.divide(2 * tp, 2 * tp + fp + fn, out=np.zeros_like(tp), where=(2 * tp + fp + fn) > 0)
    tpr = np.divide(tp, tp + fn, out=np.zeros_like(tp), where=(tp + fn) > 0)
    tnr = np.divide(tn, tn + fp, out=np.zeros_like(tp), where=(tn + fp) > 0)
    return {"accuracy": ((tp + tn) / n).tolist(), "f1": f1.tolist(), "balanced_accuracy": ((tpr + tnr) / 2).tolist()}


def channel_statistics(x_u8: torch.Tensor, chunk: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std (ddof=1, floored at 1e-3) of uint8 images ``(N, H, W, C)``
    scaled to [0, 1], from a 256-bin histogram per channel built over chunks of images:
    float64-exact, and never more than ``chunk`` images converted at once."""
    n_channels = x_u8.shape[-1]
    offsets = torch.arange(n_channels, device=x_u8.device) * 256
    counts = torch.zeros(256 * n_channels, dtype=torch.float64, device=x_u8.device)
    for start in range(0, len(x_u8), chunk):
        codes = x_u8[start:start + chunk].long() + offsets
        counts += torch.bincount(codes.reshape(-1), minlength=256 * n_channels).double()
    counts = counts.view(n_channels, 256)
    values = torch.arange(256, dtype=torch.float64, device=x_u8.device) / 255.0
    n = counts.sum(1)
    mean = (counts * values).sum(1) / n
    var = (counts * (values - mean[:, None]) ** 2).sum(1) / (n - 1).clamp_min(1)
    return mean.float(), var.sqrt().clamp_min(1e-3).float()


@dataclass
class TrainingData:
    """Training and test tensors on the device. ``x_*`` uint8 ``(N, H, W, C)``; ``y_*`` float32
    ``(N, n_tasks)``."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    @classmethod
    def from_arrays(cls, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                    device: torch.device) -> "TrainingData":
        """From host arrays: images ``(N, H, W, C)`` uint8, labels ``(N, n_tasks)``."""
        y = lambda a: torch.from_numpy(np.asarray(a, dtype=np.float32)).to(device)  # noqa: E731
        return cls(images_to_tensor(x_train, device), y(y_train), images_to_tensor(x_test, device), y(y_test))


def cpu_has_amx() -> bool:
    """Does this CPU have AMX bf16 tile units (Linux ``/proc/cpuinfo`` flag ``amx_bf16``)?"""
    try:
        with open("/proc/cpuinfo") as f:
            return any(line.startswith("flags") and " amx_bf16" in line for line in f)
    except OSError:
        return False


def use_mixed_precision(device: torch.device, image_shape: tuple[int, int, int]) -> bool:
    """The ``precision="auto"`` rule: autocast on CUDA; on CPU only with AMX bf16 units and for
    colour images of 32 px and more, where convolutions dominate (docs/benchmarks.md)."""
    if device.type == "cuda":
        return True
    h, w, c = image_shape
    return device.type == "cpu" and c >= 3 and min(h, w) >= 32 and cpu_has_amx()


def precision_amp(precision: str) -> bool | None:
    """``TrainConfig.precision`` as the trainer's ``amp`` argument (None = the auto rule)."""
    return {"auto": None, "fp32": False, "bf16": True}[precision]


class MultiTaskTrainer:
    """Trains a :class:`MultiHeadNet` on all tasks at once with a per-task loss weight.

    ``task_weights`` ``(n_tasks,)``: 1 for every task in plain MTL; a cluster's membership
    column for an STG-MTL specialised model (paper eq. 3).
    """

    def __init__(self, model: MultiHeadNet, data: TrainingData, *, lr: float = 1e-3, weight_decay: float = 0.0,
                 batch_size: int = 256, seed: int = 0, task_weights: np.ndarray | None = None,
                 record: bool = True, channels_last: bool | None = None, amp: bool | None = None) -> None:
        self.device = data.x_train.device
        self.model = model.to(self.device)
        self.data = data
        self.batch_size = batch_size
        self.seed = seed
        cuda = self.device.type == "cuda"
        _, height, width, channels = data.x_train.shape
        # channels_last: always on CUDA; on CPU for colour images of 32 px and more, where it pays
        # (docs/benchmarks.md).
        self.channels_last = (cuda or (channels >= 3 and min(height, width) >= 32)) if channels_last is None \
            else channels_last
        use_amp = use_mixed_precision(self.device, (height, width, channels)) if amp is None else amp
        # bf16 where the hardware has it, and always on CPU, where fp16 autocast is much slower.
        bf16 = not cuda or torch.cuda.is_bf16_supported()
        self.amp_dtype = (torch.bfloat16 if bf16 else torch.float16) if use_amp else None
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        n, n_tasks = data.y_train.shape
        # fused Adam: one kernel for all parameters instead of a chain of foreach ops.
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=lr, weight_decay=weight_decay, fused=True)
        self.scaler = torch.amp.GradScaler(enabled=self.amp_dtype == torch.float16)
        self.pos_weight = torch.as_tensor(pos_weights(data.y_train.cpu().numpy()), dtype=torch.float32,
                                          device=self.device)
        w = np.ones(n_tasks) if task_weights is None else np.array(task_weights, dtype=np.float64)
        if w.shape != (n_tasks,) or not np.all(np.isfinite(w)) or np.any(w < 0):
            raise ValueError(f"task_weights must be {n_tasks} finite non-negative numbers")
        self.task_weights = torch.as_tensor(w, dtype=torch.float32, device=self.device)
        self.recorder = PTrueRecorder(n, n_tasks, self.device) if record else None
        # Per-channel normalisation folded into one multiply-add on the uint8 batch. The
        # statistics come from per-channel histograms of the 256 byte values: exact, and no
        # float copy of the training set (which cost +586 MB at 50,000 CIFAR images).
        mean, std = channel_statistics(data.x_train)
        self._scale = (1.0 / (255.0 * std)).view(1, -1, 1, 1)
        self._shift = (-mean / std).view(1, -1, 1, 1)

    def inputs(self, x_u8: torch.Tensor) -> torch.Tensor:
        """uint8 ``(B, H, W, C)`` → normalised float ``(B, C, H, W)``."""
        x = torch.addcmul(self._shift, x_u8.permute(0, 3, 1, 2).float(), self._scale)
        return x.contiguous(memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)

    def autocast(self) -> Any:
        """The autocast context of this trainer's precision (disabled in fp32)."""
        return torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None)

    def loss_per_task(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """BCE with each task's ``pos_weight``, averaged over the batch: logits and targets
        ``(B, ..., n_tasks)`` → ``(..., n_tasks)`` (``(n_tasks,)`` for plain MTL; TAG, Grad-TAE and
        DMTG reuse it, DMTG with a group axis)."""
        losses = F.binary_cross_entropy_with_logits(logits.float(), targets, pos_weight=self.pos_weight,
                                                    reduction="none")
        return losses.mean(0)

    def optimizer_step(self, loss: torch.Tensor) -> None:
        """One optimiser step on the scalar ``loss`` (gradient scaling when training in fp16)."""
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()

    def batches(self, epoch: int) -> list[torch.Tensor]:
        """Sample-index batches of ``epoch`` (1-based): one seeded permutation cut into
        ``ceil(N / batch_size)`` near-equal slices, so every sample is seen once per epoch
        (the data map needs them all) and no slice has a single sample (BatchNorm needs 2)."""
        n = self.data.y_train.shape[0]
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(n, generator=generator).to(self.device)
        n_batches = max(1, math.ceil(n / self.batch_size))
        if n_batches > 1 and n // n_batches < 2:
            n_batches = n // 2
        return list(torch.tensor_split(order, n_batches))

    def step_epoch(self, epoch: int, batch_loss: Callable[[int, torch.Tensor], torch.Tensor],
                   after_step: Callable[[int, int], None] | None = None) -> float:
        """One pass over the batches of ``epoch``, one optimiser step per batch on the scalar that
        ``batch_loss(i, index)`` returns for batch ``i`` (0-based) and its sample indices ``(B,)``;
        ``after_step(i + 1, n_batches)`` follows each step. Returns the mean loss per sample.

        Dropout masks come from torch's global generator: it is forked and seeded per epoch, so a
        resumed run draws the same masks as an uninterrupted one and callers are unaffected."""
        self.model.train()
        batches = self.batches(epoch)
        loss_sum = torch.zeros((), device=self.device)
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.seed * 1_000_003 + epoch)
            for i, index in enumerate(batches):
                loss = batch_loss(i, index)
                self.optimizer_step(loss)
                loss_sum += loss.detach() * len(index)
                if after_step is not None:
                    after_step(i + 1, len(batches))
        return float(loss_sum) / self.data.y_train.shape[0]

    def train_epoch(self, epoch: int, progress: Callable[[int, int], None] | None = None,
                    before_step: Callable[[int, torch.Tensor], None] | None = None) -> dict[str, Any]:
        """One pass over the training set. Returns the epoch's mean weighted loss and, when
        recording, ``p_true`` ``(n_tasks, N)`` float16 and per-task train scores.

        ``before_step(i, index)`` is called before the forward pass of batch ``i`` (0-based) with
        its sample indices ``(B,)`` (TAG measures its lookahead affinity there); it must leave
        the model's parameters and the global random state as it found them."""

        def batch_loss(i: int, index: torch.Tensor) -> torch.Tensor:
            if before_step is not None:
                before_step(i, index)
            targets = self.data.y_train[index]
            with self.autocast():
                logits = self.model(self.inputs(self.data.x_train[index]))
            if self.recorder is not None:  # detached: the optimiser step leaves these logits as they are
                self.recorder.record(index, logits.detach(), targets)
            return (self.loss_per_task(logits, targets) * self.task_weights).sum()

        out: dict[str, Any] = {"train_loss": self.step_epoch(epoch, batch_loss, progress)}
        if self.recorder is not None:
            p_true = self.recorder.buffer
            y = self.data.y_train.bool()
            # Predicted positive <=> logit > 0 <=> p_true above 0.5 for positives, below for negatives.
            pred = torch.where(y, p_true > 0.5, p_true < 0.5)
            out["train"] = scores_from_counts(binary_counts(pred, y).cpu().numpy())
            out["p_true"] = self.recorder.epoch_values()
        return out

    @torch.no_grad()
    def predict_logits(self, x_u8: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
        """Eval-mode logits (float32) of uint8 images ``(M, H, W, C)``: ``(M, n_tasks)`` for a
        :class:`MultiHeadNet` (``(M, K, n_tasks)`` for DMTG's K-branch network)."""
        self.model.eval()
        out = []
        for start in range(0, len(x_u8), batch_size):
            with self.autocast():
                out.append(self.model(self.inputs(x_u8[start:start + batch_size])).float())
        return torch.cat(out)

    @torch.no_grad()
    def evaluate(self) -> dict[str, Any]:
        """Test loss (weighted, as in training) and per-task scores on the held-out split."""
        logits = self.predict_logits(self.data.x_test)
        y = self.data.y_test
        loss = float((self.loss_per_task(logits, y) * self.task_weights).sum())
        return {"test_loss": loss, "test": scores_from_counts(binary_counts(logits > 0, y.bool()).cpu().numpy())}

    # ---- checkpoint state as plain arrays (no pickle) ------------------------------------
    def state_arrays(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Model and optimiser state as named float/int arrays plus JSON-able metadata."""
        arrays = {f"model/{k}": v.detach().cpu().numpy() for k, v in self.model.state_dict().items()}
        opt = self.optimizer.state_dict()
        for pid, state in opt["state"].items():
            for key, value in state.items():
                arrays[f"optim/{pid}/{key}"] = torch.as_tensor(value).detach().cpu().numpy()
        return arrays, {"param_groups": opt["param_groups"], "scaler": self.scaler.state_dict()}

    def load_state_arrays(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        self.model.load_state_dict(model_state(arrays))
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        state: dict[int, dict[str, torch.Tensor]] = {}
        for k, v in arrays.items():
            if k.startswith("optim/"):
                _, pid, key = k.split("/", 2)
                saved = torch.from_numpy(v)
                param = params[int(pid)]
                if saved.shape == param.shape and saved.dim() > 1:
                    # Moment buffers in the parameter's own memory layout (channels_last on a
                    # conv weight): fused Adam reads them as raw memory, so a buffer restored in
                    # the default layout would pair each weight with another weight's moments.
                    saved = torch.empty_like(param).copy_(saved)
                state.setdefault(int(pid), {})[key] = saved
        self.optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
        if meta.get("scaler"):
            self.scaler.load_state_dict(meta["scaler"])


def model_state(arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """The model's ``state_dict`` from checkpoint arrays (:meth:`MultiTaskTrainer.state_arrays`)."""
    return {k[len("model/"):]: torch.from_numpy(v) for k, v in arrays.items() if k.startswith("model/")}


def init_heads(heads: torch.nn.Linear, task_keys: list[str], seed: int) -> None:
    """Initialise head j from a generator seeded by ``(seed, task_keys[j])``, with the
    distribution of ``nn.Linear``'s default (uniform ±1/√fan_in).

    A head then depends on its task, not on its position: reordering the tasks permutes the
    heads. Every task has a key of its own (see :func:`task_key`), so every head starts
    independently, as in the original code: two tasks with the same or complementary labels
    (a duplicate, "Living being" / "Not living being") start apart and must earn similar
    memberships from training.
    """
    bound = 1.0 / math.sqrt(heads.in_features)
    with torch.no_grad():
        for j, key in enumerate(task_keys):
            digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
            generator = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))
            row = torch.rand(heads.in_features + 1, generator=generator) * (2 * bound) - bound
            heads.weight[j] = row[:-1]
            heads.bias[j] = row[-1]


def task_key(task: Task) -> str:
    """A task's identity for seeding its head: its name and definition (names are unique in a
    task set, so no two heads of a run share a key)."""
    return json.dumps([task.name, task.kind, sorted(task.positives), task.seed])


def seeded_model(spec: ExperimentSpec, image_shape: tuple[int, int, int]) -> MultiHeadNet:
    """The initial model of ``spec`` for images ``(H, W, C)``: trunk from ``spec.train.seed``,
    heads from :func:`init_heads`."""
    h, w, c = image_shape
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.train.seed)
        model = build_model(spec.train.model, c, (h, w), len(spec.tasks), feature_dim=spec.train.feature_dim)
    init_heads(model.heads, [task_key(t) for t in spec.tasks], spec.train.seed)
    return model


def load_spec_data(spec: ExperimentSpec, *, download: bool = False) -> tuple[Dataset, TaskLabels]:
    """Dataset subset and task labels of ``spec`` (apply ``labels.flip_*`` to the images with
    :func:`~stg_core.tasks.apply_flips` before training)."""
    dataset = load_dataset(spec.dataset, root=spec.data_root, subset=spec.subset, test_subset=spec.test_subset,
                           seed=spec.data_seed, download=download)
    labels = build_labels(spec.tasks, dataset)
    return dataset, labels


def spec_training_data(spec: ExperimentSpec, device: torch.device, *,
                       download: bool = False) -> tuple[Dataset, TaskLabels, TrainingData]:
    """Dataset subset, task labels and device tensors of ``spec`` (flips applied to the images)."""
    dataset, labels = load_spec_data(spec, download=download)
    data = TrainingData.from_arrays(apply_flips(dataset.x_train, labels.flip_train), labels.y_train,
                                    apply_flips(dataset.x_test, labels.flip_test), labels.y_test, device)
    return dataset, labels, data


def load_trained_model(store: ArtifactStore, run_id: str, image_shape: tuple[int, int, int]) -> MultiHeadNet:
    """The MTL model of a completed run, as its last checkpoint left it (on the CPU, eval mode)."""
    spec = store.load_spec(run_id)
    if store.read_status(run_id).get("state") != "completed":
        raise ValueError(f"run {run_id} has not finished training")
    checkpoint = store.load_checkpoint(run_id)
    if checkpoint is None:
        raise ValueError(f"run {run_id} has no checkpoint")
    model = seeded_model(spec, image_shape)
    model.load_state_dict(model_state(checkpoint[0]))
    return model.eval()


def estimate_run_seconds(spec: ExperimentSpec, image_shape: tuple[int, int, int], n_train: int, n_test: int, *,
                         device: str = "auto", steps: int = 3) -> float:
    """Estimated wall time in seconds of training ``spec`` on ``n_train`` images ``(H, W, C)``.

    Times ``steps`` real optimiser steps of the run's model on random data (after one warm-up
    step) and scales by the number of batches per epoch, plus one evaluation pass per epoch at
    about a third of a training step per image.
    """
    spec.train.validate()
    dev = resolve_device(device)
    h, w, c = image_shape
    batch = min(spec.train.batch_size, n_train)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (batch, h, w, c), dtype=np.uint8)
    y = rng.integers(0, 2, (batch, len(spec.tasks)), dtype=np.uint8)
    data = TrainingData.from_arrays(x, y, x[:1], y[:1], dev)
    with torch.random.fork_rng(devices=[]):  # leave the caller's global generator alone
        torch.manual_seed(0)
        model = build_model(spec.train.model, c, (h, w), len(spec.tasks), feature_dim=spec.train.feature_dim)
    trainer = MultiTaskTrainer(model, data, lr=spec.train.lr, batch_size=batch, seed=0, record=False,
                               amp=precision_amp(spec.train.precision))
    trainer.train_epoch(1)  # warm-up: allocations, oneDNN kernel selection
    t0 = time.perf_counter()
    for epoch in range(steps):
        trainer.train_epoch(epoch + 2)
    per_image = (time.perf_counter() - t0) / (steps * batch)
    return spec.train.epochs * per_image * (n_train + n_test / 3)


def save_run_spec(store: ArtifactStore, spec: ExperimentSpec) -> str:
    """Save ``spec`` with the library versions it runs under (idempotent); return the run id."""
    return store.save_spec(spec, extra={"versions": {"torch": torch.__version__, "numpy": np.__version__,
                                                     "python": platform.python_version()}})


def prepare_run(spec: ExperimentSpec, *, device: str = "auto", download: bool = False,
                loaded: tuple[Dataset, TaskLabels] | None = None
                ) -> tuple[Dataset, TaskLabels, TrainingData, MultiHeadNet]:
    """Everything :func:`train_run` checks before it writes: the spec's fields, the device, the
    dataset subset, the task labels and the initial model (``loaded``: as in :func:`train_run`).
    A one-line ``ValueError`` (or ``DatasetNotFoundError``) names what is wrong; nothing is
    written anywhere."""
    spec.validate()
    dev = resolve_device(device)
    if loaded is None:
        dataset, labels, data = spec_training_data(spec, dev, download=download)
    else:
        dataset, labels = loaded
        data = TrainingData.from_arrays(apply_flips(dataset.x_train, labels.flip_train), labels.y_train,
                                        apply_flips(dataset.x_test, labels.flip_test), labels.y_test, dev)
    return dataset, labels, data, seeded_model(spec, dataset.image_shape)


ProgressFn = Callable[[int, int, int, int], None]  # (epoch, n_epochs, batch, n_batches)


def train_run(spec: ExperimentSpec, store: ArtifactStore, *, device: str = "auto",
              progress: ProgressFn | None = None, should_stop: Callable[[], bool] | None = None,
              download: bool = False, loaded: tuple[Dataset, TaskLabels] | None = None) -> str:
    """Train (or resume, or reuse) the MTL run of ``spec``, recording data maps; return its id.

    Every finished epoch writes, atomically and in this order: its p_true, its Gram statistics
    (:mod:`stg_core.reduction`), the metrics, the checkpoint, the status. A run killed at any point restarts from the last checkpoint and
    ends with the same artifacts as an uninterrupted run. ``should_stop`` is polled after each
    epoch; when it returns True the run is left resumable (state ``interrupted``). ``loaded``:
    the dataset and labels of ``spec`` when the caller has them already (a seed sweep loads
    them once for all its runs), as :func:`load_spec_data` returns them.

    The run's writer lock (:meth:`ArtifactStore.writer_lock`) is held throughout: a second
    trainer of the same run, in any process, is refused with
    :class:`~stg_core.locks.JobBusyError` ("run X is being trained by process P").
    """
    spec.validate()
    run_id = spec.run_id()
    if store.exists(run_id) and store.read_status(run_id).get("state") == "completed":
        return run_id
    # Data, tasks and model are checked before anything is written: bad input leaves the store untouched.
    prepared = prepare_run(spec, device=device, download=download, loaded=loaded)
    with store.writer_lock(run_id):
        return _train_locked(spec, store, run_id, device, progress, should_stop, prepared)


def _train_locked(spec: ExperimentSpec, store: ArtifactStore, run_id: str, device: str,
                  progress: ProgressFn | None, should_stop: Callable[[], bool] | None,
                  prepared: tuple[Dataset, TaskLabels, TrainingData, MultiHeadNet]) -> str:
    """:func:`train_run` while holding the run's writer lock, on :func:`prepare_run`'s output."""
    if store.exists(run_id) and store.read_status(run_id).get("state") == "completed":
        return run_id  # finished by the writer that held the lock before
    dataset, labels, data, model = prepared
    dev = resolve_device(device)
    save_run_spec(store, spec)
    store.remove_partial_writes(run_id)
    status = store.read_status(run_id)
    if status.get("epochs_done", 0) == 0:
        store.write_array(run_id, "samples/labels", labels.y_train)
        classes = dataset.y_train if dataset.kind == "classes" else np.full(len(dataset.y_train), -1)
        store.write_array(run_id, "samples/classes", classes.astype(np.int64))
        store.write_dataset_info(run_id, {"name": dataset.name, "kind": dataset.kind,
                                          "class_names": list(dataset.class_names),
                                          "super_groups": dataset.super_groups,
                                          "image_shape": list(dataset.image_shape), "source": dataset.source})
    trainer = MultiTaskTrainer(model, data, lr=spec.train.lr, weight_decay=spec.train.weight_decay,
                               batch_size=spec.train.batch_size, seed=spec.train.seed,
                               amp=precision_amp(spec.train.precision))
    start = 0
    checkpoint = store.load_checkpoint(run_id)
    if checkpoint is not None:
        trainer.load_state_arrays(*checkpoint)
        start = int(checkpoint[1]["epoch"])
    recorder = RunRecorder(store, run_id, len(spec.tasks), len(dataset.y_train), dev)
    recorder.resume(start)
    rows = [r for r in store.read_metrics(run_id) if r["epoch"] <= start]
    model_name = resolve_model_name(spec.train.model, dataset.image_shape[:2])
    store.write_status(run_id, state="running", epochs_done=start, epochs=spec.train.epochs, pid=os.getpid(),
                       device=str(dev), model=model_name, n_train=len(dataset.y_train),
                       precision=str(trainer.amp_dtype).removeprefix("torch.") if trainer.amp_dtype else "float32",
                       n_test=len(dataset.y_test), error=None)
    try:
        for epoch in range(start + 1, spec.train.epochs + 1):
            t0 = time.perf_counter()
            step = None if progress is None else (lambda b, nb, e=epoch: progress(e, spec.train.epochs, b, nb))
            result = trainer.train_epoch(epoch, step)
            if not math.isfinite(result["train_loss"]):  # nothing of this epoch is recorded
                raise ValueError(f"training diverged: the loss of epoch {epoch} is {result['train_loss']} at "
                                 f"learning rate lr={spec.train.lr:g}; try a smaller lr")
            result.update(trainer.evaluate())
            seconds = time.perf_counter() - t0
            recorder.record(epoch, result.pop("p_true"))
            rows.append({"epoch": epoch, "seconds": seconds, **result})
            store.write_metrics(run_id, rows)
            arrays, meta = trainer.state_arrays()
            store.save_checkpoint(run_id, arrays, {**meta, "epoch": epoch})
            store.write_status(run_id, epochs_done=epoch)
            if should_stop is not None and should_stop() and epoch < spec.train.epochs:
                store.write_status(run_id, state="interrupted")
                return run_id
    except BaseException as exc:
        store.write_status(run_id, state="interrupted" if isinstance(exc, KeyboardInterrupt) else "failed",
                           error=f"{type(exc).__name__}: {exc}")
        raise
    store.write_status(run_id, state="completed", pid=None)
    return run_id
