"""Image-classification datasets for task grouping, behind one small registry.

Every dataset in :data:`DATASET_NAMES` is reached through :func:`load_dataset`, which
returns a :class:`Dataset` with uint8 images shaped ``(N, H, W, C)`` and either class ids
``(N,)`` or a 0/1 attribute matrix ``(N, A)``. :func:`dataset_status` answers "is it
here?" without loading anything. Each name has a private loader in ``_LOADERS`` and,
for datasets read from a folder, a finder in ``_FINDERS`` that lists the places searched
and returns the first one holding the files; both the loaders and ``dataset_status`` use
the same finders, so "available" and "loads" agree.

Only ``digits`` ships with a library (scikit-learn); the others are read from disk in
their usual layouts (torchvision's, or Debian's ``dataset-fashion-mnist`` package) and are
downloaded only when asked (``download=True``). Files are never unpickled with plain
``pickle.load``: CIFAR batches go through a restricted unpickler and ``.npz`` files are
opened with ``allow_pickle=False``.
"""

from __future__ import annotations

import gzip
import math
import os
import pickle
import struct
import zipfile
from zlib import error as zlib_error
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

DATASET_NAMES: tuple[str, ...] = ("digits", "fashion_mnist", "cifar10", "cifar100", "celeba", "npz")

#: CelebA images are center-cropped to a square and resized to this many pixels a side.
CELEBA_IMAGE_SIZE = 64

# Limits on what a data file may make us allocate, checked before anything is allocated
# (declared shapes and sizes are read from headers first). They are named in the errors.
#: Bytes of one data file (.npz, IDX, CIFAR batch), and of the arrays it declares together
#: (1 GiB; the app's upload limit, ``server.maxUploadSize`` in .streamlit/config.toml, matches).
MAX_DATA_BYTES = 2**30
#: Classes (max label + 1) or attribute columns of a dataset.
MAX_CLASSES = 10_000
#: Pixels of one CelebA image before it is decoded (its files are 178x218).
MAX_IMAGE_PIXELS = 2**25

FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
_FASHION_SUPER = {"tops": ("T-shirt/top", "Pullover", "Coat", "Shirt"),
                  "footwear": ("Sandal", "Sneaker", "Ankle boot"),
                  "Trouser": ("Trouser",), "Dress": ("Dress",), "Bag": ("Bag",)}
_CIFAR10_SUPER = {"vehicles": ("airplane", "automobile", "ship", "truck"),
                  "animals": ("bird", "cat", "deer", "dog", "frog", "horse")}
_FASHION_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                  "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
_DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
_CIFAR_DIRS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}
_CIFAR_FILES = {"cifar10": ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4",
                            "data_batch_5", "test_batch", "batches.meta"),
                "cifar100": ("train", "test", "meta")}


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are not on disk; the message says where we looked and how to get them."""


@dataclass(frozen=True, eq=False)
class Dataset:
    """A loaded dataset. Images are uint8 ``(N, H, W, C)``; labels ``(N,)`` int64 or ``(N, A)`` uint8."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    super_groups: dict[str, tuple[str, ...]] | None = None
    source: str = ""

    def __post_init__(self) -> None:
        for x, y, split in ((self.x_train, self.y_train, "train"), (self.x_test, self.y_test, "test")):
            if x.ndim != 4 or len(x) != len(y):
                raise ValueError(f"{self.name} {split}: images {x.shape} and labels {y.shape} do not "
                                 "match (expected (N, H, W, C) and (N,) or (N, A))")
        if self.y_train.ndim != self.y_test.ndim:
            raise ValueError(f"{self.name}: train and test labels are of different kinds")

    @property
    def kind(self) -> str:
        """``"classes"`` for single-label data, ``"attributes"`` for multi-label 0/1 data."""
        return "classes" if self.y_train.ndim == 1 else "attributes"

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(H, W, C)`` of one image."""
        h, w, c = self.x_train.shape[1:]
        return int(h), int(w), int(c)


@dataclass(frozen=True)
class DatasetStatus:
    name: str
    available: bool
    location: str | None
    message: str


def default_data_root() -> Path:
    """``$STG_DATA`` if set, else ``~/.cache/stg-mtl/data``."""
    env = os.environ.get("STG_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "stg-mtl" / "data"


def allowed_data_roots() -> list[Path]:
    """Folders a user may point the app at for dataset files: the default data root plus the
    folders listed in ``$STG_DATA_ROOTS`` (separated by ``os.pathsep``)."""
    extra = [Path(p).expanduser() for p in os.environ.get("STG_DATA_ROOTS", "").split(os.pathsep) if p]
    return [default_data_root(), *extra]


def check_data_root(path: str | os.PathLike) -> Path:
    """``path`` resolved, if it is an existing folder inside one of :func:`allowed_data_roots`;
    otherwise ``ValueError`` saying why (a local app still should not read arbitrary paths)."""
    text = str(path).strip()
    if not text:
        raise ValueError("the data folder is empty")
    resolved = Path(text).expanduser().resolve()
    roots = [r.expanduser().resolve() for r in allowed_data_roots()]
    if not any(resolved == r or r in resolved.parents for r in roots):
        raise ValueError(f"{resolved} is outside the allowed data folders ({', '.join(map(str, roots))}); "
                         "add it to STG_DATA_ROOTS to allow it")
    if not resolved.is_dir():
        raise ValueError(f"{resolved} is not an existing folder")
    return resolved


# --------------------------------------------------------------------------- helpers

def _check_name(name: str) -> None:
    if name not in DATASET_NAMES:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASET_NAMES)}")


def _pick(n: int, k: int | None, seed: int, what: str) -> np.ndarray | None:
    """Sorted indices of a seeded ``k``-of-``n`` choice without replacement (None = keep all)."""
    if k is None:
        return None
    if k < 1 or k > n:
        raise ValueError(f"{what}={k} is out of range: {n} images are available (need 1..{n})")
    return np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))


def _how_to_get(name: str, root: Path | None) -> str:
    base = root if root is not None else default_data_root()
    if name == "fashion_mnist":
        return ("apt-get install dataset-fashion-mnist, or pass download=True / --download when online, "
                f"or put the four IDX files in {root or default_data_root() / 'fashion_mnist'}")
    if name in _CIFAR_DIRS:
        tgz = "cifar-10-python.tar.gz" if name == "cifar10" else "cifar-100-python.tar.gz"
        return (f"extract {tgz} into {base} so that {base / _CIFAR_DIRS[name]} exists, "
                "or pass download=True / --download when online")
    return (f"put list_attr_celeba.txt, list_eval_partition.txt and img_align_celeba/ in "
            f"{base / 'celeba'}, or pass download=True / --download when online")


def _not_found(name: str, root: Path | None, searched: list[Path],
               exc: Exception | None = None) -> DatasetNotFoundError:
    where = "\n".join(f"  - {p}" for p in searched)
    tried = f"\n(download=True was tried and failed: {exc})" if exc is not None else ""
    return DatasetNotFoundError(f"dataset {name!r} not found. Looked in:\n{where}\n"
                                f"To get it: {_how_to_get(name, root)}{tried}")


def _fetch(name: str, target: Path) -> None:
    """Download ``name`` into ``target`` with torchvision, in the layout our finders search."""
    # torchvision is used only to fetch files (its readers unpickle / md5-check; see loaders).
    if name == "fashion_mnist":
        from torchvision.datasets import FashionMNIST
        FashionMNIST(str(target), download=True)
    elif name == "celeba":
        from torchvision.datasets import CelebA
        CelebA(str(target), download=True)
    else:
        from torchvision.datasets import CIFAR10, CIFAR100
        from torchvision.datasets.utils import download_and_extract_archive
        cls = CIFAR10 if name == "cifar10" else CIFAR100
        download_and_extract_archive(cls.url, str(target), filename=cls.filename, md5=cls.tgz_md5)


def _locate(name: str, root: Path | None, download: bool) -> Path:
    """Folder holding ``name``'s files, downloading them first if missing and ``download``."""
    folder, searched = _FINDERS[name](root)
    if folder is None and download:
        try:
            _fetch(name, root if root is not None else default_data_root())
        except Exception as exc:  # network failures come in many types
            raise _not_found(name, root, searched, exc) from exc
        folder, searched = _FINDERS[name](root)
    if folder is None:
        raise _not_found(name, root, searched)
    return folder


# --------------------------------------------------------------------------- digits

def _load_digits(root: Path | None, download: bool) -> Dataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = np.round(bunch.images * 255.0 / 16.0).astype(np.uint8)[..., None]
    y = bunch.target.astype(np.int64)
    # Fixed split: ``seed`` only chooses subsets, so results stay comparable across seeds.
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    return Dataset("digits", xtr, ytr, xte, yte, tuple(str(i) for i in range(10)),
                   None, "sklearn.datasets.load_digits")


# --------------------------------------------------------------------------- Fashion-MNIST (IDX)

def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """Parse an IDX file of unsigned bytes with ``ndim`` dimensions (gzipped if it ends in .gz).

    The header's dimensions are checked against :data:`MAX_DATA_BYTES` before the data is read,
    and no more than the declared bytes (plus one, to detect extra data) are ever read."""
    header = 4 + 4 * ndim
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            head = f.read(header)
            if len(head) < 4 or head[:3] != b"\x00\x00\x08" or head[3] != ndim:
                raise ValueError(f"{path}: not a uint8 IDX file with {ndim} dimension(s) "
                                 f"(bad magic {head[:4].hex() or 'empty'}, expected 000008{ndim:02x})")
            if len(head) < header:
                raise ValueError(f"{path}: truncated IDX header")
            dims = struct.unpack(f">{ndim}I", head[4:])
            size = math.prod(dims)
            if size > MAX_DATA_BYTES:
                raise ValueError(f"{path}: IDX header declares {dims} = {size} bytes, over the limit "
                                 f"MAX_DATA_BYTES={MAX_DATA_BYTES}")
            raw = f.read(size + 1)
    except (OSError, EOFError, zlib_error) as exc:
        raise ValueError(f"{path}: cannot read IDX file ({exc})") from exc
    if len(raw) != size:
        raise ValueError(f"{path}: IDX header says {dims} = {size} bytes of data, "
                         f"file has {'more' if len(raw) > size else len(raw)}")
    return np.frombuffer(raw, dtype=np.uint8).reshape(dims).copy()


def _fashion_files(folder: Path) -> list[Path] | None:
    """The four IDX files in ``folder`` (uncompressed preferred), or None if any is missing."""
    found = []
    for base in _FASHION_FILES:
        hits = [folder / n for n in (base, base + ".gz") if (folder / n).is_file()]
        if not hits:
            return None
        found.append(hits[0])
    return found


def _find_fashion_mnist(root: Path | None) -> tuple[Path | None, list[Path]]:
    default = default_data_root()
    searched = ([root, root / "FashionMNIST" / "raw"] if root is not None else []) + [
        default / "fashion_mnist", default / "FashionMNIST" / "raw", _DEBIAN_FASHION]
    return next((p for p in searched if _fashion_files(p)), None), searched


def _load_fashion_mnist(root: Path | None, download: bool) -> Dataset:
    folder = _locate("fashion_mnist", root, download)
    tr_x, tr_y, te_x, te_y = _fashion_files(folder)  # type: ignore[misc]
    xtr, xte = _read_idx(tr_x, 3), _read_idx(te_x, 3)
    ytr, yte = _read_idx(tr_y, 1).astype(np.int64), _read_idx(te_y, 1).astype(np.int64)
    for x, y, f in ((xtr, ytr, tr_y), (xte, yte, te_y)):
        if len(x) != len(y) or (len(y) and y.max() > 9):
            raise ValueError(f"{f}: {len(y)} labels (max {y.max() if len(y) else '-'}) do not fit "
                             f"{len(x)} images of 10 classes")
    return Dataset("fashion_mnist", xtr[..., None], ytr, xte[..., None], yte,
                   FASHION_MNIST_CLASSES, dict(_FASHION_SUPER), str(folder))


# --------------------------------------------------------------------------- CIFAR (safe unpickling)

def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    # Protocol-2 pickles written by Python 3 store bytes as _codecs.encode(text, "latin1").
    if encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


def _declared_bytes(shape: Any, dtype: Any) -> int:
    """Bytes an array of ``shape`` and ``dtype`` would take, or ``UnpicklingError`` when that is
    not a plain shape, an object dtype, or over :data:`MAX_DATA_BYTES` (nothing is allocated)."""
    dims = (shape,) if isinstance(shape, int) else shape
    if not isinstance(dims, tuple) or not all(isinstance(d, int) and d >= 0 for d in dims):
        raise pickle.UnpicklingError(f"refusing an array of shape {str(shape)[:80]}")
    dtype = np.dtype(dtype)
    if dtype.hasobject:
        raise pickle.UnpicklingError("refusing an object array")
    size = math.prod(dims) * dtype.itemsize
    if size > MAX_DATA_BYTES:
        raise pickle.UnpicklingError(f"refusing an array of {size} bytes (limit MAX_DATA_BYTES={MAX_DATA_BYTES})")
    return size


_NP_RECONSTRUCT = np.zeros(1).__reduce__()[0]


def _capped_reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    # numpy's reconstructor allocates ``shape`` (pickles write (0,) and fill the array later).
    # The pickle names the class as numpy.ndarray, which this unpickler maps to _capped_ndarray.
    if subtype is not _capped_ndarray:
        raise pickle.UnpicklingError("refusing an array subclass")
    _declared_bytes(shape, dtype)
    return _NP_RECONSTRUCT(np.ndarray, shape, dtype)


def _capped_ndarray(shape: Any, dtype: Any = float, *args: Any, **kwargs: Any) -> np.ndarray:
    _declared_bytes(shape, dtype)
    return np.ndarray(shape, dtype, *args, **kwargs)


def _capped_bytes(*args: Any) -> bytes:
    # ``bytes(n)`` allocates n zero bytes: a 39-byte pickle can ask for terabytes.
    if args and isinstance(args[0], int) and not 0 <= args[0] <= MAX_DATA_BYTES:
        raise pickle.UnpicklingError(f"refusing bytes({args[0]}) (limit MAX_DATA_BYTES={MAX_DATA_BYTES})")
    return bytes(*args)


# numpy's own reconstructors, under the module names both numpy 1 and numpy 2 pickles use,
# behind checks that bound what they allocate.
_NP_MODULES = ("numpy.core.multiarray", "numpy._core.multiarray")
_SAFE_GLOBALS: dict[tuple[str, str], Any] = {
    **{(mod, "_reconstruct"): _capped_reconstruct for mod in _NP_MODULES},
    **{(mod, "scalar"): np.int64(0).__reduce__()[0] for mod in _NP_MODULES},
    ("numpy", "ndarray"): _capped_ndarray,
    ("numpy", "dtype"): np.dtype,
    **{(mod, "bytes"): _capped_bytes for mod in ("builtins", "__builtin__")},  # protocol 2 pickles b""
    ("_codecs", "encode"): _latin1_encode,
}


class _SafeUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild numpy arrays and plain containers, and nothing else."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _SAFE_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}") from None


def _safe_unpickle(path: Path) -> dict[str, Any]:
    """Load a CIFAR batch dict; bytes keys are decoded so ``d["data"]`` works either way."""
    # Deviation from torchvision: its CIFAR classes call plain pickle.load, which runs any
    # code a crafted file asks for; here only the globals in _SAFE_GLOBALS can be built.
    size = path.stat().st_size
    if size > MAX_DATA_BYTES:
        raise ValueError(f"{path} is {size} bytes, over the limit MAX_DATA_BYTES={MAX_DATA_BYTES}")
    with open(path, "rb") as f:
        try:
            obj = _SafeUnpickler(f, encoding="latin1").load()
        except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError, KeyError, TypeError,
                ValueError, OverflowError, RecursionError, MemoryError, struct.error) as exc:
            # what a damaged or foreign file raises: a bad-input error, not a crash
            raise ValueError(f"{path} is not a readable CIFAR batch ({type(exc).__name__}: "
                             f"{_one_line(exc)})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a pickled dict, got {type(obj).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _one_line(exc: BaseException, limit: int = 200) -> str:
    """An exception's message on one line, cut to ``limit`` characters (messages quote input)."""
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[:limit] + "..."


def _entry(d: dict[str, Any], key: str, path: Path) -> Any:
    if key not in d:
        raise ValueError(f"{path}: missing {key!r} entry")
    return d[key]


def _int_labels(values: Any, key: str, path: Path) -> np.ndarray:
    try:
        labels = np.asarray(values, dtype=np.int64)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f"{path}: {key!r} must be a list of integer labels ({_one_line(exc)})") from None
    if labels.ndim != 1:
        raise ValueError(f"{path}: {key!r} must be a flat list of labels, got shape {labels.shape}")
    return labels


def _cifar_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    d = _safe_unpickle(path)
    data, labels = np.asarray(_entry(d, "data", path)), _int_labels(_entry(d, label_key, path), label_key, path)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise ValueError(f"{path}: expected uint8 data (N, 3072) and N labels, "
                         f"got {data.dtype} {data.shape} and {labels.shape}")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy(), labels, d


def _names(values: Any, what: str = "names") -> tuple[str, ...]:
    if not isinstance(values, (list, tuple, np.ndarray)) or not 0 < len(values) <= MAX_CLASSES:
        raise ValueError(f"{what} must be a list of 1 to MAX_CLASSES={MAX_CLASSES} names")
    return tuple(v.decode("latin1") if isinstance(v, bytes) else str(v) for v in values)


def _find_cifar(name: str, root: Path | None) -> tuple[Path | None, list[Path]]:
    base = root if root is not None else default_data_root()
    searched = [base / _CIFAR_DIRS[name], base]  # the extracted folder itself is fine too
    ok = (p for p in searched if all((p / f).is_file() for f in _CIFAR_FILES[name]))
    return next(ok, None), searched


def _load_cifar(name: str, root: Path | None, download: bool) -> Dataset:
    folder = _locate(name, root, download)
    if name == "cifar10":
        parts = [_cifar_batch(folder / f"data_batch_{i}", "labels") for i in range(1, 6)]
        xtr, ytr = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        xte, yte, _ = _cifar_batch(folder / "test_batch", "labels")
        meta_path = folder / "batches.meta"
        classes = _names(_entry(_safe_unpickle(meta_path), "label_names", meta_path), f"{meta_path}: 'label_names'")
        standard = set(classes) == {c for g in _CIFAR10_SUPER.values() for c in g}
        supers = dict(_CIFAR10_SUPER) if standard else None
    else:
        xtr, ytr, train = _cifar_batch(folder / "train", "fine_labels")
        xte, yte, _ = _cifar_batch(folder / "test", "fine_labels")
        meta_path = folder / "meta"
        meta = _safe_unpickle(meta_path)
        classes = _names(_entry(meta, "fine_label_names", meta_path), f"{meta_path}: 'fine_label_names'")
        coarse_names = _names(_entry(meta, "coarse_label_names", meta_path), f"{meta_path}: 'coarse_label_names'")
        coarse = _int_labels(_entry(train, "coarse_labels", folder / "train"), "coarse_labels", folder / "train")
        if len(coarse) != len(ytr) or (len(coarse) and not 0 <= coarse.min() <= coarse.max() < len(coarse_names)):
            raise ValueError(f"{folder / 'train'}: 'coarse_labels' must be one label in 0..{len(coarse_names) - 1} "
                             "per image")
        pairs = np.unique(np.stack([coarse, ytr], axis=1), axis=0)  # sorted by (coarse, fine)
        if len(np.unique(pairs[:, 1])) != len(pairs):
            raise ValueError(f"{folder / 'train'}: a fine label belongs to several coarse labels")
        supers = {coarse_names[c]: tuple(classes[f] for cc, f in pairs if cc == c)
                  for c in np.unique(pairs[:, 0])}
    for y, split in ((ytr, "train"), (yte, "test")):
        if len(y) and (y.min() < 0 or y.max() >= len(classes)):
            raise ValueError(f"{folder}: {split} labels outside 0..{len(classes) - 1}")
    return Dataset(name, xtr, ytr, xte, yte, classes, supers, str(folder))


# --------------------------------------------------------------------------- CelebA

def _find_celeba(root: Path | None) -> tuple[Path | None, list[Path]]:
    base = root if root is not None else default_data_root()
    searched = [base / "celeba", base]
    ok = (p for p in searched if (p / "list_attr_celeba.txt").is_file()
          and (p / "list_eval_partition.txt").is_file() and (p / "img_align_celeba").is_dir())
    return next(ok, None), searched


def _celeba_image(path: Path) -> np.ndarray:
    """One CelebA image, center-cropped and resized; ``ValueError`` naming the file when it is
    missing, not an image, or over :data:`MAX_IMAGE_PIXELS` (checked before decoding)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            w, h = im.size
            if w * h > MAX_IMAGE_PIXELS:
                raise ValueError(f"{path}: image of {w}x{h} pixels, over the limit MAX_IMAGE_PIXELS={MAX_IMAGE_PIXELS}")
            im = im.convert("RGB")
            s = min(w, h)
            if s < 1:
                raise ValueError(f"{path}: image of {w}x{h} pixels")
            box = ((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)
            im = im.resize((CELEBA_IMAGE_SIZE, CELEBA_IMAGE_SIZE), Image.Resampling.BILINEAR, box=box)
            return np.asarray(im, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError, SyntaxError) as exc:
        raise ValueError(f"{path}: cannot decode the image ({_one_line(exc)})") from None


def _load_celeba(root: Path | None, download: bool, subset: int | None,
                 test_subset: int | None, seed: int) -> Dataset:
    import pandas as pd

    folder = _locate("celeba", root, download)
    # Deviation from torchvision: its CelebA md5-checks the text files, which rejects trimmed
    # copies; the format is simple enough to parse directly.
    attr_path = folder / "list_attr_celeba.txt"
    with open(attr_path) as f:
        f.readline()
        attr_names = tuple(f.readline().split())
    attrs = pd.read_csv(attr_path, sep=r"\s+", skiprows=2, header=None, dtype={0: str})
    if attrs.shape[1] != len(attr_names) + 1:
        raise ValueError(f"{attr_path}: rows have {attrs.shape[1] - 1} values "
                         f"for {len(attr_names)} attributes")
    values = attrs.iloc[:, 1:].to_numpy()
    if not np.isin(values, (-1, 1)).all():
        raise ValueError(f"{attr_path}: attribute values must be -1 or 1")
    part = pd.read_csv(folder / "list_eval_partition.txt", sep=r"\s+", header=None,
                       names=["file", "split"], dtype={"file": str})
    split = part.set_index("file")["split"].reindex(attrs[0]).to_numpy()
    if np.isnan(split.astype(float)).any():
        raise ValueError(f"{folder / 'list_eval_partition.txt'}: some images have no partition entry")
    files, onehot = attrs[0].to_numpy(), (values == 1).astype(np.uint8)
    out = []
    for code, k, what in ((0, subset, "subset"), (2, test_subset, "test_subset")):
        idx = np.flatnonzero(split == code)
        keep = _pick(len(idx), k, seed, what)  # before decoding: decoding all 200k JPEGs is slow
        idx = idx if keep is None else idx[keep]
        x = np.stack([_celeba_image(folder / "img_align_celeba" / files[i]) for i in idx]) if len(idx) \
            else np.zeros((0, CELEBA_IMAGE_SIZE, CELEBA_IMAGE_SIZE, 3), np.uint8)
        out += [x, onehot[idx]]
    return Dataset("celeba", out[0], out[1], out[2], out[3], attr_names, None, str(folder))


# --------------------------------------------------------------------------- user .npz

def _npz_array(npz: Any, key: str, path: Path) -> np.ndarray:
    try:
        return npz[key]
    except ValueError as exc:  # object arrays need pickle, which allow_pickle=False refuses
        raise ValueError(f"{path}: array {key!r} is an object array, which is refused (it would need "
                         "unpickling); save plain numeric or string arrays") from exc
    except (OSError, EOFError, zipfile.BadZipFile, zlib_error) as exc:
        raise ValueError(f"{path}: array {key!r} cannot be read ({_one_line(exc)})") from None


def _npz_headers(path: Path, keys: set[str]) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Declared ``(shape, dtype)`` of the arrays ``keys`` of an .npz archive, read from their
    .npy headers without loading them; ``ValueError`` when they declare more than
    :data:`MAX_DATA_BYTES` together, or more than their archive entries hold."""
    out, total = {}, 0
    try:
        with zipfile.ZipFile(path) as zf:
            for key in sorted(keys):
                info = zf.getinfo(key + ".npy")
                with zf.open(info) as f:
                    version = np.lib.format.read_magic(f)
                    if version == (1, 0):
                        shape, _, dtype = np.lib.format.read_array_header_1_0(f)
                    elif version == (2, 0):
                        shape, _, dtype = np.lib.format.read_array_header_2_0(f)
                    else:
                        raise ValueError(f"array {key!r}: unsupported .npy format version {version}")
                    header = f.tell()
                size = math.prod(shape) * dtype.itemsize
                total += size
                if total > MAX_DATA_BYTES:
                    raise ValueError(f"array {key!r} declares shape {shape} of {dtype} ({size} bytes): the arrays "
                                     f"exceed the limit MAX_DATA_BYTES={MAX_DATA_BYTES}")
                if not dtype.hasobject and size > info.file_size - header:
                    raise ValueError(f"array {key!r} declares {size} bytes but holds {info.file_size - header}")
                out[key] = (shape, dtype)
    except (OSError, EOFError, KeyError, zipfile.BadZipFile, zlib_error) as exc:
        raise ValueError(f"{path}: not a valid .npz file ({_one_line(exc)})") from None
    except ValueError as exc:
        raise ValueError(f"{path}: {_one_line(exc, 400)}") from None
    return out


def _npz_images(x: np.ndarray, key: str, path: Path) -> np.ndarray:
    if x.dtype != np.uint8:
        raise ValueError(f"{path}: {key!r} must have dtype uint8, got {x.dtype}")
    if x.ndim not in (3, 4):
        raise ValueError(f"{path}: {key!r} must have ndim 3 (N,H,W) or 4 (N,H,W,C), got shape {x.shape}")
    if min(x.shape[1:]) < 1:
        raise ValueError(f"{path}: {key!r} has images of shape {x.shape[1:]}: no pixels")
    return x[..., None] if x.ndim == 3 else x


def _npz_targets(y: np.ndarray, key: str, n: int, path: Path, attributes: bool) -> np.ndarray:
    if len(y) != n:
        raise ValueError(f"{path}: length mismatch: {key!r} has {len(y)} rows but the images have {n}")
    if attributes:
        if y.ndim != 2 or not np.isin(y, (0, 1)).all():
            raise ValueError(f"{path}: {key!r} must be an (N, A) matrix of 0/1 values")
        if y.shape[1] > MAX_CLASSES:
            raise ValueError(f"{path}: {key!r} has {y.shape[1]} attributes, over the limit MAX_CLASSES={MAX_CLASSES}")
        return y.astype(np.uint8)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{path}: labels {key!r} must be integers of shape (N,), "
                         f"got {y.dtype} {y.shape}")
    if len(y) and y.min() < 0:
        raise ValueError(f"{path}: labels {key!r} contain negative values")
    if len(y) and y.max() >= MAX_CLASSES:
        raise ValueError(f"{path}: labels {key!r} go up to {y.max()}, over the limit MAX_CLASSES={MAX_CLASSES} "
                         "(labels are class ids 0..n_classes-1)")
    return y.astype(np.int64)


def _load_npz(path: Path | None) -> Dataset:
    from sklearn.model_selection import train_test_split

    if path is None:
        raise ValueError("dataset 'npz' needs root=<path of the .npz file>")
    if not path.is_file():
        raise DatasetNotFoundError(f"dataset 'npz': no file at {path}; "
                                   "pass the path of an existing .npz file as root")
    size = path.stat().st_size
    if size > MAX_DATA_BYTES:
        raise ValueError(f"{path} is {size} bytes, over the limit MAX_DATA_BYTES={MAX_DATA_BYTES}")
    if not zipfile.is_zipfile(path):  # np.load would read a bare .npy array whole, whatever it declares
        raise ValueError(f"{path}: not a valid .npz file (not a zip archive of arrays)")
    try:
        npz = np.load(path, allow_pickle=False)  # an archive opens lazily: only its list of arrays is read
    except Exception as exc:
        raise ValueError(f"{path}: not a valid .npz file ({_one_line(exc)})") from None
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise ValueError(f"{path}: not a valid .npz file (a single .npy array, not an archive)")
    with npz:
        keys = set(npz.files)
        _npz_headers(path, keys & {"x", "y", "attributes", "x_test", "y_test", "attributes_test",
                                   "class_names", "attribute_names"})
        if "x" not in keys:
            raise ValueError(f"{path}: missing array 'x' (images); found {sorted(keys)}")
        attributes = "attributes" in keys
        if attributes == ("y" in keys):
            raise ValueError(f"{path}: needs exactly one of 'y' (class labels) "
                             "or 'attributes' (0/1 matrix)")
        ykey, yte_key = ("attributes", "attributes_test") if attributes else ("y", "y_test")
        x = _npz_images(_npz_array(npz, "x", path), "x", path)
        y = _npz_targets(_npz_array(npz, ykey, path), ykey, len(x), path, attributes)
        if "x_test" in keys:
            if yte_key not in keys:
                raise ValueError(f"{path}: has 'x_test' but no {yte_key!r}")
            xte = _npz_images(_npz_array(npz, "x_test", path), "x_test", path)
            yte = _npz_targets(_npz_array(npz, yte_key, path), yte_key, len(xte), path, attributes)
            if xte.shape[1:] != x.shape[1:] or yte.shape[1:] != y.shape[1:]:
                raise ValueError(f"{path}: test arrays {xte.shape}/{yte.shape} do not match "
                                 f"train {x.shape}/{y.shape}")
        else:
            xte = yte = None
        nkey = "attribute_names" if attributes else "class_names"
        names = _npz_array(npz, nkey, path) if nkey in keys else None
    if names is not None and names.dtype.kind not in "US":
        raise ValueError(f"{path}: {nkey!r} must be an array of strings, got {names.dtype}")
    if attributes:
        n_names = y.shape[1]
    else:
        n_names = int(max(y.max(initial=-1), yte.max(initial=-1) if yte is not None else -1)) + 1
        if len(np.unique(y)) < 2:
            raise ValueError(f"{path}: labels need at least 2 classes, found {len(np.unique(y))}")
    if names is not None and len(names) != n_names:
        raise ValueError(f"{path}: {nkey!r} count mismatch: {len(names)} names for {n_names} "
                         + ("attributes" if attributes else "classes (max label + 1)"))
    classes = _names(names) if names is not None else tuple(str(i) for i in range(n_names))
    if xte is None:
        try:
            try:
                x, xte, y, yte = train_test_split(x, y, test_size=0.25, random_state=0,
                                                  stratify=None if attributes else y)
            except ValueError:  # too few images per class to stratify
                x, xte, y, yte = train_test_split(x, y, test_size=0.25, random_state=0)
        except ValueError as exc:
            raise ValueError(f"{path}: too few images ({len(x)}) to split "
                             f"into train/test ({exc})") from exc
    return Dataset("npz", x, y, xte, yte, classes, None, str(path))


# --------------------------------------------------------------------------- registry / public API

_FINDERS: dict[str, Callable[[Path | None], tuple[Path | None, list[Path]]]] = {
    "fashion_mnist": _find_fashion_mnist,
    "cifar10": lambda r: _find_cifar("cifar10", r),
    "cifar100": lambda r: _find_cifar("cifar100", r),
    "celeba": _find_celeba,
}
_LOADERS: dict[str, Callable[[Path | None, bool], Dataset]] = {
    "digits": _load_digits,
    "fashion_mnist": _load_fashion_mnist,
    "cifar10": lambda r, d: _load_cifar("cifar10", r, d),
    "cifar100": lambda r, d: _load_cifar("cifar100", r, d),
    "npz": lambda r, d: _load_npz(r),
}
_DESCRIPTIONS = {"fashion_mnist": "Fashion-MNIST IDX files", "cifar10": "CIFAR-10 python batches",
                 "cifar100": "CIFAR-100 python files", "celeba": "CelebA attribute lists and images"}


def load_dataset(name: str, *, root: str | os.PathLike | None = None, subset: int | None = None,
                 test_subset: int | None = None, seed: int = 0, download: bool = False) -> Dataset:
    """Load dataset ``name`` (one of :data:`DATASET_NAMES`).

    ``root``: folder to look in first (for ``"npz"``: the file itself). ``subset`` /
    ``test_subset``: keep that many train / test images, chosen without replacement by
    ``np.random.default_rng(seed)`` (a fresh generator per split) and kept in ascending
    index order. ``download``: fetch missing files with torchvision (needs network).
    Raises DatasetNotFoundError when the files are missing, ValueError for bad arguments or
    malformed files.
    """
    _check_name(name)
    root_path = Path(root).expanduser() if root is not None else None
    if name == "celeba":
        return _load_celeba(root_path, download, subset, test_subset, seed)
    return subset_dataset(_LOADERS[name](root_path, download), subset, test_subset, seed)


def subset_dataset(ds: Dataset, subset: int | None = None, test_subset: int | None = None, seed: int = 0) -> Dataset:
    """The seeded train / test subsets of ``ds`` that :func:`load_dataset` returns for the same
    arguments (``None`` keeps a split whole)."""
    tr = _pick(len(ds.x_train), subset, seed, "subset")
    te = _pick(len(ds.x_test), test_subset, seed, "test_subset")
    if tr is None and te is None:
        return ds
    tr = np.arange(len(ds.x_train)) if tr is None else tr
    te = np.arange(len(ds.x_test)) if te is None else te
    return Dataset(ds.name, ds.x_train[tr], ds.y_train[tr], ds.x_test[te], ds.y_test[te],
                   ds.class_names, ds.super_groups, ds.source)


def dataset_status(name: str, root: str | os.PathLike | None = None) -> DatasetStatus:
    """Whether ``name`` can be loaded, checking only that its files exist (nothing is read)."""
    _check_name(name)
    root_path = Path(root).expanduser() if root is not None else None
    if name == "digits":
        return DatasetStatus(name, True, "sklearn.datasets.load_digits",
                             "scikit-learn's bundled 8x8 digits (1797 images, 10 classes)")
    if name == "npz":
        if root_path is not None and root_path.is_file():
            return DatasetStatus(name, True, str(root_path), f"user .npz file {root_path}")
        where = f"{root_path} does not exist" if root_path is not None else "no file given"
        return DatasetStatus(name, False, None, f"{where}; pass the path of an .npz file with arrays "
                             "'x' (uint8 images) and 'y' (labels) or 'attributes' (0/1)")
    folder, searched = _FINDERS[name](root_path)
    if folder is not None:
        return DatasetStatus(name, True, str(folder), f"{_DESCRIPTIONS[name]} in {folder}")
    return DatasetStatus(name, False, None, str(_not_found(name, root_path, searched)))
