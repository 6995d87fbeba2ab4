"""Binary task definitions, presets and the task label matrix.

A *task* is one binary classification problem on a dataset's images:

- ``classes``   positive iff the image's class is in a set (one-vs-rest is a set of one);
- ``attribute`` positive iff an attribute column is 1 (CelebA-style datasets);
- ``random``    seeded Bernoulli(0.5) labels: a task nothing can be learned from;
- ``flipped``   the paper's "Downside": a seeded half of the images is flipped vertically and
  the label says whether the image was flipped.

The flip is applied to the images only when a ``flipped`` task is part of the task set (the
original code flips the images whatever the tasks are, a bug that changes every other task).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stg_core.data import MAX_CLASSES, Dataset
from stg_core.validation import MAX_SEED, check_integer, is_integer, show

TASK_KINDS = ("classes", "attribute", "random", "flipped")

#: Tasks in one task set (a run trains one head per task).
MAX_TASKS = 10_000
#: Bytes of a task file (JSON).
MAX_TASK_FILE_BYTES = 10 * 2**20
#: Characters of a task name, a class name or an attribute name.
MAX_NAME_LENGTH = 200

# Keys of a task's JSON form: to_json writes name, kind, positives and seed; files may use
# the shorthands classes / attribute instead of kind + positives.
_TASK_KEYS = ("name", "kind", "positives", "seed", "classes", "attribute")


@dataclass(frozen=True)
class Task:
    """One binary task. ``positives`` holds class names (``classes``) or one attribute name."""

    name: str
    kind: str = "classes"
    positives: tuple[str, ...] = ()
    seed: int = 0  # labels of ``random``, flipped half of ``flipped``

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["positives"] = list(self.positives)
        return out

    @classmethod
    def from_json(cls, obj: Any, position: int | None = None) -> "Task":
        """Build a task from its JSON form (see :func:`load_task_file` for the accepted keys).

        Anything else is a one-line ``ValueError`` naming the task (or its ``position`` in the
        file when it has no usable name) and the field."""
        where = "a task" if position is None else f"task #{position + 1}"
        if not isinstance(obj, dict):
            raise ValueError(f"{where}: must be an object with a 'name', got {show(obj)}")
        name = obj.get("name")
        if not isinstance(name, str) or not _is_name(name):
            empty = "empty name: " if isinstance(name, str) and not name.strip() else ""
            raise ValueError(f"{where}: {empty}'name' must be a non-empty one-line string of at most "
                             f"{MAX_NAME_LENGTH} characters, got {show(name)}")
        where = f"task {name!r}"
        unknown = [k for k in obj if k not in _TASK_KEYS]
        if unknown:
            raise ValueError(f"{where}: unknown field {show(unknown[0])}; known fields: {', '.join(_TASK_KEYS)}")
        shorthands = [k for k in ("classes", "attribute") if k in obj]
        if len(shorthands) > 1 or (shorthands and ("kind" in obj or "positives" in obj)):
            raise ValueError(f"{where}: give 'classes', 'attribute' or 'kind' with 'positives', not several "
                             f"(got {', '.join(k for k in _TASK_KEYS[1:] if k in obj)})")
        if "classes" in obj:
            kind, positives = "classes", _names_field(obj["classes"], "classes", where)
        elif "attribute" in obj:
            attribute = obj["attribute"]
            if not isinstance(attribute, str) or not _is_name(attribute):
                raise ValueError(f"{where}: 'attribute' must be one attribute name, got {show(attribute)}")
            kind, positives = "attribute", (attribute,)
        else:
            kind = obj.get("kind", "classes")
            if not isinstance(kind, str) or kind not in TASK_KINDS:
                raise ValueError(f"{where}: 'kind'={show(kind)} is unknown; known kinds: {', '.join(TASK_KINDS)}")
            positives = obj.get("positives", [])
            if not isinstance(positives, list) or not all(isinstance(p, str) for p in positives):
                raise ValueError(f"{where}: 'positives' must be a list of names, got {show(positives)}")
            positives = _names_field(positives, "positives", where)
        seed = check_integer("'seed'", obj.get("seed", 0), 0, MAX_SEED, owner=f"{where}: ")
        return cls(name, kind, positives, seed)

    def validate(self) -> None:
        """One-line ``ValueError`` naming the field unless every field has its type and range
        (a task built in Python, not read from JSON)."""
        if not isinstance(self.name, str) or not _is_name(self.name):
            raise ValueError(f"a task: 'name' must be a non-empty one-line string, got {show(self.name)}")
        Task.from_json({"name": self.name, "kind": self.kind, "seed": self.seed,
                        "positives": list(self.positives) if isinstance(self.positives, tuple) else self.positives})


def _is_name(text: str) -> bool:
    return 0 < len(text) <= MAX_NAME_LENGTH and bool(text.strip()) and text.isprintable()


def _names_field(value: Any, field: str, where: str) -> tuple[str, ...]:
    """Class or attribute names of a task field: one name, or a list of names; numbers are
    accepted as class names (``"classes": [3, 5]`` on digits)."""
    items = value if isinstance(value, list) else [value]
    if len(items) > MAX_CLASSES or not all(isinstance(c, str) or is_integer(c) for c in items):
        raise ValueError(f"{where}: {field!r} must be a name or a list of at most {MAX_CLASSES} names, "
                         f"got {show(value)}")
    names = tuple(c if isinstance(c, str) else str(int(c)) for c in items)
    bad = [c for c in names if not _is_name(c)]
    if bad:
        raise ValueError(f"{where}: {field!r} has an invalid name {show(bad[0])} (names are one-line strings "
                         f"of 1 to {MAX_NAME_LENGTH} characters)")
    return names


@dataclass(frozen=True)
class TaskLabels:
    """Labels of a task set on one dataset, and the flip applied to the images.

    ``y_train`` ``(N, n_tasks)`` uint8, ``y_test`` ``(M, n_tasks)`` uint8; ``flip_train``
    ``(N,)`` / ``flip_test`` ``(M,)`` bool masks of vertically flipped images, or ``None`` when
    the task set has no ``flipped`` task.
    """

    names: tuple[str, ...]
    y_train: np.ndarray
    y_test: np.ndarray
    flip_train: np.ndarray | None
    flip_test: np.ndarray | None


def _class_tasks(names: list[str]) -> list[Task]:
    return [Task(n, "classes", (n,)) for n in names]


_CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
_FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
_DIGITS = [str(d) for d in range(10)]

# G2 extras (REFERENCES.md): two exact complements, one class-set task cutting across them,
# one flipped and one random task.
_CIFAR10_G2_EXTRAS = [
    Task("Living being", "classes", ("bird", "cat", "deer", "dog", "frog", "horse")),
    Task("Odd-numbered", "classes", tuple(_CIFAR10[1::2])),
    Task("Downside", "flipped", seed=0),
    Task("Not living being", "classes", ("airplane", "automobile", "ship", "truck")),
    Task("Random", "random", seed=0),
]
_FASHION_G2_EXTRAS = [
    Task("Footwear", "classes", ("Sandal", "Sneaker", "Ankle boot")),
    Task("Tops", "classes", ("T-shirt/top", "Pullover", "Coat", "Shirt")),
    Task("Downside", "flipped", seed=0),
    Task("Not footwear", "classes", tuple(c for c in _FASHION if c not in ("Sandal", "Sneaker", "Ankle boot"))),
    Task("Random", "random", seed=0),
]
_DIGITS_G2_EXTRAS = [
    Task("Round", "classes", ("0", "6", "8", "9")),
    Task("Odd", "classes", ("1", "3", "5", "7", "9")),
    Task("Downside", "flipped", seed=0),
    Task("Not round", "classes", ("1", "2", "3", "4", "5", "7")),
    Task("Random", "random", seed=0),
]

#: The two planted sets of classes of ``digits-planted``, and its tasks' positives: per set,
#: the whole set and two pairs of it that share a digit.
PLANTED_SETS = (("0", "4", "6"), ("3", "8", "9"))
_PLANTED_POSITIVES = (("0", "4", "6"), ("0", "4"), ("4", "6"), ("3", "8", "9"), ("3", "9"), ("8", "9"))


def _planted_tasks() -> tuple[Task, ...]:
    """A known answer for grouping methods: {0,4,6}, {0,4}, {4,6} and {3,8,9}, {3,9}, {8,9}
    (:data:`PLANTED_SETS`), each with an exact duplicate ("... again"). Tasks of one set share
    positives, tasks of different sets share none. The planted grouping at k = 2 is the two
    sets, and every duplicate belongs with its original.

    Why this shape: a lookahead step or a gradient shared by two binary tasks helps both
    whatever the sign of their label correlation (one feature serves a task and its opposite),
    so the sets must differ in *how strongly* their tasks are related. For classes of equal
    frequency, a pair nested in its triple has label correlation 0.76 with it (the two pairs
    0.38), against -0.25 to -0.43 across the sets. With three 3-subsets of {0,1,2,3} and of
    {5,6,7,8} (this preset before) it was 0.52 within and -0.43 across, too little for TAG's
    selection (docs/dmtg-planted.md).

    Every task is duplicated, not just one per set: TAG's objective (a task's mean affinity with
    its group-mates) rewards a lone duplicate pair so much that a single pair would be split off
    as a group of its own; with a twin for every task no pair stands out."""
    out = []
    for positives in _PLANTED_POSITIVES:
        name = "{" + ",".join(positives) + "}"
        out += [Task(name, "classes", positives), Task(f"{name} again", "classes", positives)]
    return tuple(out)


_CELEBA_ATTRIBUTES = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose "
    "Black_Hair Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee "
    "Gray_Hair Heavy_Makeup High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard "
    "Oval_Face Pale_Skin Pointy_Nose Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair "
    "Wavy_Hair Wearing_Earrings Wearing_Hat Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young"
).split()


@dataclass(frozen=True)
class Preset:
    name: str
    dataset: str
    description: str
    tasks: tuple[Task, ...]


def _cifar100_tasks() -> tuple[Task, ...]:
    # The fine class names in the dataset's own (alphabetical) order.
    names = (
        "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus "
        "butterfly camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch "
        "crab crocodile cup dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo "
        "keyboard lamp lawn_mower leopard lion lizard lobster man maple_tree motorcycle mountain mouse "
        "mushroom oak_tree orange orchid otter palm_tree pear pickup_truck pine_tree plain plate poppy "
        "porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk skyscraper "
        "snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television "
        "tiger tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm"
    ).split()
    return tuple(_class_tasks(names))


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset("cifar10-g1", "cifar10", "G1: the 10 CIFAR-10 classes, one-vs-rest", tuple(_class_tasks(_CIFAR10))),
        Preset(
            "cifar10-g2", "cifar10", "G2: G1 + Living being, Odd-numbered, Downside, Not living being, Random",
            tuple(_class_tasks(_CIFAR10) + _CIFAR10_G2_EXTRAS),
        ),
        Preset("cifar100-g3", "cifar100", "G3: the 100 CIFAR-100 fine classes, one-vs-rest", _cifar100_tasks()),
        Preset(
            "celeba-g4", "celeba", "G4: the 40 CelebA attributes",
            tuple(Task(a, "attribute", (a,)) for a in _CELEBA_ATTRIBUTES),
        ),
        Preset("fashion_mnist-g1", "fashion_mnist", "The 10 Fashion-MNIST classes, one-vs-rest", tuple(_class_tasks(_FASHION))),
        Preset(
            "fashion_mnist-g2", "fashion_mnist",
            "G1 + Footwear, Tops, Downside, Not footwear (complement of Footwear), Random",
            tuple(_class_tasks(_FASHION) + _FASHION_G2_EXTRAS),
        ),
        Preset("digits-g1", "digits", "The 10 digits, one-vs-rest (offline default)", tuple(_class_tasks(_DIGITS))),
        Preset(
            "digits-g2", "digits", "G1 + Round, Odd, Downside, Not round (complement of Round), Random",
            tuple(_class_tasks(_DIGITS) + _DIGITS_G2_EXTRAS),
        ),
        Preset(
            "digits-planted", "digits",
            "Planted: {0,4,6}, {0,4}, {4,6} and {3,8,9}, {3,9}, {8,9}, each duplicated (answer at k = 2)",
            _planted_tasks(),
        ),
    ]
}


#: The planted grouping of ``digits-planted``: task name -> planted group (0 or 1).
PLANTED_GROUPS = {t.name: int(set(t.positives) <= set(PLANTED_SETS[1])) for t in _planted_tasks()}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}")
    return PRESETS[name]


def load_task_file(path: str | os.PathLike) -> tuple[Task, ...]:
    """Read a custom task set from JSON.

    Accepted forms: ``{"tasks": [...]}`` or a bare list, each task one of
    ``{"name": "footwear", "classes": ["Sandal", "Sneaker"]}``,
    ``{"name": "smile", "attribute": "Smiling"}``,
    ``{"name": "noise", "kind": "random", "seed": 3}``,
    ``{"name": "upside down", "kind": "flipped", "seed": 0}``.
    Anything else is a one-line ``ValueError`` naming the task and the field.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_TASK_FILE_BYTES:
            raise ValueError(f"task file {str(path)!r} is {size} bytes, over the limit "
                             f"MAX_TASK_FILE_BYTES={MAX_TASK_FILE_BYTES}")
        content = path.read_bytes()
    except FileNotFoundError:
        raise ValueError(f"task file {str(path)!r} does not exist") from None
    except OSError as exc:
        raise ValueError(f"task file {str(path)!r} cannot be read ({exc.strerror})") from None
    return tasks_from_text(content, repr(str(path)))


def tasks_from_text(content: bytes | str, source: str = "") -> tuple[Task, ...]:
    """The task set of a task file's content (see :func:`load_task_file`); ``source`` names the
    file in messages."""
    what = f"task file {source}".rstrip()
    if len(content) > MAX_TASK_FILE_BYTES:
        raise ValueError(f"{what} is {len(content)} bytes, over the limit MAX_TASK_FILE_BYTES={MAX_TASK_FILE_BYTES}")
    try:
        obj = json.loads(content)
    except RecursionError:
        raise ValueError(f"{what}: 'tasks' is nested too deeply to be a list of task objects") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an integer of too many digits
        raise ValueError(f"{what} is not valid JSON: {' '.join(str(exc).split())[:200]}") from None
    return tasks_from_json(obj)


def tasks_from_json(obj: Any) -> tuple[Task, ...]:
    """Tasks of a parsed task file: ``{"tasks": [...]}`` or a bare list of task objects."""
    if isinstance(obj, dict) and set(obj) != {"tasks"}:
        raise ValueError(f"'tasks': a task set is {{\"tasks\": [...]}} or a list of tasks; got fields "
                         f"{show(sorted(obj))}")
    items = obj.get("tasks") if isinstance(obj, dict) else obj
    if not isinstance(items, list) or not items or len(items) > MAX_TASKS:
        raise ValueError(f"'tasks' must be a non-empty list of at most MAX_TASKS={MAX_TASKS} tasks, got "
                         f"{show(items) if not isinstance(items, list) else f'{len(items)} tasks'}")
    tasks = tuple(Task.from_json(t, i) for i, t in enumerate(items))
    check_unique_names(tasks)
    return tasks


def check_unique_names(tasks: tuple[Task, ...] | list[Task]) -> None:
    seen: set[str] = set()
    for t in tasks:
        if t.name in seen:
            raise ValueError(f"duplicate task name {t.name!r}: each task needs its own 'name'")
        seen.add(t.name)


def validate_tasks(tasks: tuple[Task, ...] | list[Task], dataset: Dataset) -> None:
    """Check a task set against a dataset; raise ``ValueError`` naming the first problem.

    Cheap checks only (names, classes, kinds); label-dependent checks (a task with no positive
    or no negative training image) happen in :func:`build_labels`.
    """
    if not tasks:
        raise ValueError("the task set is empty")
    seen: set[str] = set()
    for t in tasks:
        if not t.name.strip():
            raise ValueError("a task has an empty name")
        if t.name in seen:
            raise ValueError(f"duplicate task name {t.name!r}")
        seen.add(t.name)
        if t.kind not in TASK_KINDS:
            raise ValueError(f"task {t.name!r}: unknown kind {t.kind!r}; known kinds: {', '.join(TASK_KINDS)}")
        if t.kind == "classes":
            if dataset.kind != "classes":
                raise ValueError(f"task {t.name!r}: class-set tasks need a labelled dataset; "
                                 f"{dataset.name} has attributes ({', '.join(dataset.class_names[:3])}, ...)")
            if not t.positives:
                raise ValueError(f"task {t.name!r} has no positive class")
            unknown = [c for c in t.positives if c not in dataset.class_names]
            if unknown:
                raise ValueError(f"task {t.name!r}: unknown class {unknown[0]!r} for {dataset.name}; "
                                 f"classes: {', '.join(dataset.class_names)}")
            if len(set(t.positives)) == len(dataset.class_names):
                raise ValueError(f"task {t.name!r} lists every class as positive: all images would be positive")
        elif t.kind == "attribute":
            if dataset.kind != "attributes":
                raise ValueError(f"task {t.name!r}: attribute tasks need an attribute dataset; {dataset.name} has class labels")
            if len(t.positives) != 1 or t.positives[0] not in dataset.class_names:
                raise ValueError(f"task {t.name!r}: unknown attribute {t.positives!r}; "
                                 f"attributes: {', '.join(dataset.class_names)}")
        elif t.kind == "flipped":
            h = dataset.image_shape[0]
            if h < 2:
                raise ValueError(f"task {t.name!r}: images of height {h} cannot be flipped vertically")
    flipped = [t.name for t in tasks if t.kind == "flipped"]
    if len(flipped) > 1:
        raise ValueError(f"only one flipped task per task set (got {', '.join(flipped)}): "
                         "the images can be flipped one way only")
    if flipped:
        x = dataset.x_train[:2000]
        symmetric = np.mean(np.all(x == x[:, ::-1], axis=(1, 2, 3)))
        if symmetric > 0.5:
            raise ValueError(f"task {flipped[0]!r}: {symmetric:.0%} of {dataset.name}'s images are unchanged "
                             "by a vertical flip, so a flipped task makes no sense on it")


def _labels_for(task: Task, dataset: Dataset, y: np.ndarray, n: int, split_seed: int) -> np.ndarray:
    if task.kind == "classes":
        ids = [dataset.class_names.index(c) for c in task.positives]
        return np.isin(y, ids).astype(np.uint8)
    if task.kind == "attribute":
        return y[:, dataset.class_names.index(task.positives[0])].astype(np.uint8)
    rng = np.random.default_rng([task.seed, split_seed, 0 if task.kind == "random" else 1])
    if task.kind == "random":
        return (rng.random(n) < 0.5).astype(np.uint8)
    labels = np.zeros(n, dtype=np.uint8)  # flipped: exactly half, chosen by a seeded permutation
    labels[rng.permutation(n)[: n // 2]] = 1
    return labels


def build_labels(tasks: tuple[Task, ...] | list[Task], dataset: Dataset) -> TaskLabels:
    """Label matrix of ``tasks`` on ``dataset`` (train and test) plus the flip masks.

    Raises ``ValueError`` for an invalid task set, including a task with no positive or no
    negative training image (it could not be learned and its pos_weight would be undefined).
    """
    validate_tasks(tasks, dataset)
    n, m = len(dataset.y_train), len(dataset.y_test)
    y_train = np.stack([_labels_for(t, dataset, dataset.y_train, n, 0) for t in tasks], axis=1)
    y_test = np.stack([_labels_for(t, dataset, dataset.y_test, m, 1) for t in tasks], axis=1)
    for j, t in enumerate(tasks):
        pos = int(y_train[:, j].sum())
        if pos == 0:
            raise ValueError(f"task {t.name!r} has no positive training image")
        if pos == n:
            raise ValueError(f"task {t.name!r} is positive for every training image")
    flips = [j for j, t in enumerate(tasks) if t.kind == "flipped"]
    flip_train = y_train[:, flips[0]].astype(bool) if flips else None
    flip_test = y_test[:, flips[0]].astype(bool) if flips else None
    return TaskLabels(tuple(t.name for t in tasks), y_train, y_test, flip_train, flip_test)


def apply_flips(x: np.ndarray, flip: np.ndarray | None) -> np.ndarray:
    """Images ``(N, H, W, C)`` with the rows of ``flip`` ``(N,)`` turned upside down (a copy)."""
    if flip is None:
        return x
    out = x.copy()
    out[flip] = x[flip, ::-1]
    return out
