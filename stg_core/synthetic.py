"""Synthetic runs, written through the same recorder and store code as training: a finished
run of any preset at any size in seconds, without a dataset or a model — for benchmarks and
tests of the pages at the paper's scale (CIFAR-100 G3: 100 tasks × 50,000 images × 50 epochs).

p_true has planted structure: the one-vs-rest tasks of a known group share a per-sample
difficulty pattern, every task adds its own, and the tasks grow more confident epoch by epoch.

    from stg_core.synthetic import write_synthetic_run
    run_id = write_synthetic_run(store, "cifar100-g3", n_samples=50_000, n_epochs=50)
"""

from __future__ import annotations

import platform

import numpy as np

from stg_core.config import TrainConfig, spec_from_preset
from stg_core.recording import RunRecorder
from stg_core.store import ArtifactStore

#: CIFAR-100's 20 superclasses ("coarse labels") and their fine classes, as the dataset's meta
#: file lists them (training reads them from there; a synthetic run must not need the files).
CIFAR100_SUPER: dict[str, tuple[str, ...]] = {
    "aquatic_mammals": ("beaver", "dolphin", "otter", "seal", "whale"),
    "fish": ("aquarium_fish", "flatfish", "ray", "shark", "trout"),
    "flowers": ("orchid", "poppy", "rose", "sunflower", "tulip"),
    "food_containers": ("bottle", "bowl", "can", "cup", "plate"),
    "fruit_and_vegetables": ("apple", "mushroom", "orange", "pear", "sweet_pepper"),
    "household_electrical_devices": ("clock", "keyboard", "lamp", "telephone", "television"),
    "household_furniture": ("bed", "chair", "couch", "table", "wardrobe"),
    "insects": ("bee", "beetle", "butterfly", "caterpillar", "cockroach"),
    "large_carnivores": ("bear", "leopard", "lion", "tiger", "wolf"),
    "large_man-made_outdoor_things": ("bridge", "castle", "house", "road", "skyscraper"),
    "large_natural_outdoor_scenes": ("cloud", "forest", "mountain", "plain", "sea"),
    "large_omnivores_and_herbivores": ("camel", "cattle", "chimpanzee", "elephant", "kangaroo"),
    "medium_mammals": ("fox", "porcupine", "possum", "raccoon", "skunk"),
    "non-insect_invertebrates": ("crab", "lobster", "snail", "spider", "worm"),
    "people": ("baby", "boy", "girl", "man", "woman"),
    "reptiles": ("crocodile", "dinosaur", "lizard", "snake", "turtle"),
    "small_mammals": ("hamster", "mouse", "rabbit", "shrew", "squirrel"),
    "trees": ("maple_tree", "oak_tree", "palm_tree", "pine_tree", "willow_tree"),
    "vehicles_1": ("bicycle", "bus", "motorcycle", "pickup_truck", "train"),
    "vehicles_2": ("lawn_mower", "rocket", "streetcar", "tank", "tractor"),
}


def write_synthetic_run(store: ArtifactStore, preset: str = "cifar100-g3", *, n_samples: int = 50_000,
                        n_epochs: int = 50, class_names: list[str] | None = None,
                        super_groups: dict[str, tuple[str, ...]] | None = None, image_shape=(32, 32, 3),
                        seed: int = 0) -> str:
    """Write a finished run of ``preset`` with ``n_samples`` training samples and ``n_epochs``
    recorded epochs of synthetic p_true (see the module docstring); returns its id.

    Everything training writes is written: spec (marked ``"synthetic"``), dataset.json, the
    samples' labels and classes, p_true and its statistics per epoch (:class:`RunRecorder`),
    one metrics row per epoch and a completed status. ``class_names`` and ``super_groups``
    default to CIFAR-100's fine classes and superclasses (for the ``cifar100-*`` presets).
    """
    spec = spec_from_preset(preset, train=TrainConfig(epochs=n_epochs))
    if super_groups is None:
        super_groups = CIFAR100_SUPER
    if class_names is None:
        class_names = [c for group in CIFAR100_SUPER.values() for c in group]
    run_id = store.save_spec(spec, extra={"versions": {"numpy": np.__version__, "python": platform.python_version()},
                                          "synthetic": "stg_core.synthetic"})
    store.write_dataset_info(run_id, {"name": spec.dataset, "kind": "classes", "class_names": list(class_names),
                                      "super_groups": {g: list(c) for g, c in super_groups.items()},
                                      "image_shape": list(image_shape), "source": "synthetic"})
    rng = np.random.default_rng(seed)
    classes = np.arange(n_samples) % len(class_names)
    rng.shuffle(classes)
    labels = np.stack([np.isin(np.asarray(class_names)[classes], t.positives) if t.kind == "classes"
                       else rng.random(n_samples) < 0.5 for t in spec.tasks], axis=1).astype(np.uint8)
    store.write_array(run_id, "samples/labels", labels)
    store.write_array(run_id, "samples/classes", classes.astype(np.int64))

    group_of = {c: g for g, members in super_groups.items() for c in members}
    groups = sorted(super_groups)
    patterns = rng.standard_normal((len(groups), n_samples), dtype=np.float32) * 1.5  # shared per group
    logit = rng.standard_normal((len(spec.tasks), n_samples), dtype=np.float32) * 0.7  # each task's own
    for i, task in enumerate(spec.tasks):
        if task.kind == "classes" and len(task.positives) == 1 and task.positives[0] in group_of:
            logit[i] += patterns[groups.index(group_of[task.positives[0]])]
    logit += 1.0
    recorder = RunRecorder(store, run_id, len(spec.tasks), n_samples)
    rows = []
    for epoch in range(1, n_epochs + 1):
        noise = rng.standard_normal(logit.shape, dtype=np.float32) * 0.5
        p_true = 1.0 / (1.0 + np.exp(-(logit * (0.5 + epoch / n_epochs) + noise)))  # learning over epochs
        recorder.record(epoch, p_true.astype(np.float16))
        f1 = [float(v) for v in (p_true > 0.5).mean(axis=1)]
        rows.append({"epoch": epoch, "seconds": 0.0, "train_loss": float(-np.log(p_true).mean()),
                     "test_loss": float(-np.log(p_true).mean()), "train": {"f1": f1}, "test": {"f1": f1}})
        store.write_metrics(run_id, rows)
    store.write_status(run_id, state="completed", epochs_done=n_epochs, epochs=n_epochs, pid=None,
                       n_train=n_samples, n_test=0, device="cpu", model="synthetic")
    return run_id
