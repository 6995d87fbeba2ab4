"""Tests for stg_core.data: every loader runs on tiny files written in the real on-disk formats."""

from __future__ import annotations

import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from stg_core.data import (
    CELEBA_IMAGE_SIZE,
    DATASET_NAMES,
    Dataset,
    DatasetNotFoundError,
    dataset_status,
    default_data_root,
    load_dataset,
)

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def _isolated_data_root(tmp_path_factory, monkeypatch):
    """Point the default data root at an empty folder so a user's cache never leaks into tests."""
    monkeypatch.setenv("STG_DATA", str(tmp_path_factory.mktemp("stg_data")))


# --------------------------------------------------------------------------- registry

def test_unknown_name_lists_known_names():
    with pytest.raises(ValueError, match="known datasets: digits, fashion_mnist"):
        load_dataset("mnist")
    with pytest.raises(ValueError, match="unknown dataset"):
        dataset_status("mnist")


def test_default_data_root(monkeypatch, tmp_path):
    monkeypatch.setenv("STG_DATA", str(tmp_path))
    assert default_data_root() == tmp_path
    monkeypatch.delenv("STG_DATA")
    assert default_data_root() == Path.home() / ".cache" / "stg-mtl" / "data"


def test_names():
    assert DATASET_NAMES == ("digits", "fashion_mnist", "cifar10", "cifar100", "celeba", "npz")


# --------------------------------------------------------------------------- digits

def test_digits_shapes_and_values():
    ds = load_dataset("digits")
    assert ds.kind == "classes" and ds.image_shape == (8, 8, 1)
    assert ds.x_train.dtype == np.uint8 and ds.x_test.dtype == np.uint8
    assert len(ds.x_train) + len(ds.x_test) == 1797 and len(ds.x_test) == 450
    assert ds.x_train.min() == 0 and ds.x_train.max() == 255
    assert ds.y_train.dtype == np.int64 and set(ds.y_train) == set(range(10))
    assert ds.class_names == tuple("0123456789") and ds.super_groups is None
    assert dataset_status("digits").available


def test_digits_split_fixed_and_subset_seeded():
    a, b = load_dataset("digits", seed=0), load_dataset("digits", seed=1)
    np.testing.assert_array_equal(a.x_test, b.x_test)
    np.testing.assert_array_equal(a.y_train, b.y_train)

    s0 = load_dataset("digits", subset=100, test_subset=50, seed=0)
    s0b = load_dataset("digits", subset=100, test_subset=50, seed=0)
    s1 = load_dataset("digits", subset=100, seed=1)
    assert s0.x_train.shape == (100, 8, 8, 1) and len(s0.y_test) == 50 and len(s1.y_test) == 450
    np.testing.assert_array_equal(s0.x_train, s0b.x_train)
    assert not np.array_equal(s0.x_train, s1.x_train)
    idx = np.sort(np.random.default_rng(0).choice(len(a.x_train), 100, replace=False))
    np.testing.assert_array_equal(s0.x_train, a.x_train[idx])  # ascending order kept


@pytest.mark.parametrize("kw", [{"subset": 5000}, {"subset": 0}, {"test_subset": 451}])
def test_digits_bad_subset(kw):
    with pytest.raises(ValueError, match=r"available"):
        load_dataset("digits", **kw)


# --------------------------------------------------------------------------- fashion_mnist

def _idx_bytes(arr: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    return header + arr.astype(np.uint8).tobytes()


def _write_fashion(folder: Path, gz: bool = True, n_train: int = 20, n_test: int = 10) -> dict:
    rng = np.random.default_rng(0)
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
              "train-labels-idx1-ubyte": np.arange(n_train) % 10,
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
              "t10k-labels-idx1-ubyte": (np.arange(n_test) * 3) % 10}
    folder.mkdir(parents=True, exist_ok=True)
    for name, arr in arrays.items():
        data = _idx_bytes(arr)
        if gz:
            (folder / (name + ".gz")).write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return arrays


@pytest.mark.parametrize("layout", ["gz", "raw_names", "torchvision"])
def test_fashion_mnist_from_idx(tmp_path, layout):
    folder = tmp_path / "FashionMNIST" / "raw" if layout == "torchvision" else tmp_path
    arrays = _write_fashion(folder, gz=layout != "raw_names")
    ds = load_dataset("fashion_mnist", root=tmp_path)
    assert ds.source == str(folder)
    assert ds.x_train.shape == (20, 28, 28, 1) and ds.x_test.shape == (10, 28, 28, 1)
    assert ds.x_train.dtype == np.uint8
    np.testing.assert_array_equal(ds.x_train[..., 0], arrays["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(ds.y_test, arrays["t10k-labels-idx1-ubyte"])
    assert ds.class_names[0] == "T-shirt/top" and ds.class_names[9] == "Ankle boot"
    assert ds.super_groups["footwear"] == ("Sandal", "Sneaker", "Ankle boot")
    assert sorted(c for g in ds.super_groups.values() for c in g) == sorted(ds.class_names)
    assert dataset_status("fashion_mnist", tmp_path).location == str(folder)


@pytest.mark.parametrize("corrupt", [
    lambda b: b[:2] + b"\x09" + b[3:],   # wrong type byte
    lambda b: b[:3] + b"\x02" + b[4:],   # wrong number of dimensions
    lambda b: b[:-5],                    # data shorter than header says
])
def test_fashion_mnist_malformed_idx(tmp_path, corrupt):
    _write_fashion(tmp_path, gz=False)
    bad = tmp_path / "train-images-idx3-ubyte"
    bad.write_bytes(corrupt(bad.read_bytes()))
    with pytest.raises(ValueError, match="train-images-idx3-ubyte"):
        load_dataset("fashion_mnist", root=tmp_path)


@pytest.mark.skipif(not DEBIAN_FASHION.is_dir(), reason="dataset-fashion-mnist not installed")
def test_fashion_mnist_debian_package(tmp_path):
    ds = load_dataset("fashion_mnist", root=tmp_path, subset=100)  # empty root: falls through
    assert ds.source == str(DEBIAN_FASHION)
    assert ds.x_train.shape == (100, 28, 28, 1) and ds.x_test.shape == (10000, 28, 28, 1)
    assert set(np.unique(ds.y_test)) == set(range(10))


# --------------------------------------------------------------------------- CIFAR

def _cifar_rows(n: int, rng) -> np.ndarray:
    return rng.integers(0, 256, (n, 3072), dtype=np.uint8)


def _dump(path: Path, obj) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer",
                 "dog", "frog", "horse", "ship", "truck"]


def _write_cifar10(root: Path) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(1, 6):
        data = _cifar_rows(4, rng)
        data[0, :] = 0
        data[0, 2 * 1024 + 5 * 32 + 7] = 200  # blue channel, row 5, column 7
        _dump(folder / f"data_batch_{i}", {b"batch_label": b"training batch", b"labels": [i, 0, 1, 2],
                                           b"data": data, b"filenames": [b"a.png"] * 4})
    # b"" pickles (protocol 2) as __builtin__.bytes(), which the safe reader must allow
    _dump(folder / "test_batch", {b"batch_label": b"", b"labels": [9, 8, 7],
                                  b"data": _cifar_rows(3, rng)})
    _dump(folder / "batches.meta", {b"label_names": [n.encode() for n in CIFAR10_NAMES],
                                    b"num_vis": 3072})
    return folder


def test_cifar10_layout(tmp_path):
    folder = _write_cifar10(tmp_path)
    ds = load_dataset("cifar10", root=tmp_path)
    assert ds.source == str(folder)
    assert ds.x_train.shape == (20, 32, 32, 3) and ds.x_test.shape == (3, 32, 32, 3)
    assert ds.x_train.dtype == np.uint8 and ds.y_train.dtype == np.int64
    first = ds.x_train[0]
    assert first[5, 7, 2] == 200 and first.sum() == 200  # CHW rows -> HWC pixels
    np.testing.assert_array_equal(ds.y_train[:4], [1, 0, 1, 2])
    np.testing.assert_array_equal(ds.y_test, [9, 8, 7])
    assert ds.class_names == tuple(CIFAR10_NAMES)
    assert set(ds.super_groups["vehicles"]) == {"airplane", "automobile", "ship", "truck"}
    assert dataset_status("cifar10", tmp_path).available


def test_cifar100_super_groups(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(1)
    fine_names = [f"fine{i}" for i in range(6)]
    coarse_of_fine = [1, 0, 1, 2, 0, 2]
    fine = [0, 1, 2, 3, 4, 5, 5, 2]
    _dump(folder / "train", {b"fine_labels": fine, b"coarse_labels": [coarse_of_fine[f] for f in fine],
                             b"data": _cifar_rows(len(fine), rng)})
    _dump(folder / "test", {b"fine_labels": [3, 4], b"coarse_labels": [2, 0],
                            b"data": _cifar_rows(2, rng)})
    _dump(folder / "meta", {b"fine_label_names": [n.encode() for n in fine_names],
                            b"coarse_label_names": [b"c_zero", b"c_one", b"c_two"]})
    ds = load_dataset("cifar100", root=tmp_path, subset=5, seed=3)
    assert ds.x_train.shape == (5, 32, 32, 3) and len(ds.y_test) == 2
    assert ds.class_names == tuple(fine_names)
    assert ds.super_groups == {"c_zero": ("fine1", "fine4"), "c_one": ("fine0", "fine2"),
                               "c_two": ("fine3", "fine5")}


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_malicious_pickle_refused(tmp_path):
    folder = _write_cifar10(tmp_path)
    marker = tmp_path / "pwned"
    _dump(folder / "data_batch_3", {b"data": _Evil(marker), b"labels": [0]})
    # refused, and reported as bad input (ValueError: the app shows it as an error, not a traceback)
    with pytest.raises(ValueError, match="not a readable CIFAR batch .*refusing to load global"):
        load_dataset("cifar10", root=tmp_path)
    assert not marker.exists()
    # _codecs.encode is allowed for protocol-2 bytes, but only as a latin1 encoder
    _dump(folder / "data_batch_3", {b"data": _cifar_rows(1, np.random.default_rng()), b"labels": [0]})
    payload = (b"\x80\x02c_codecs\nencode\nq\x00X\x01\x00\x00\x00aX\x05\x00\x00\x00rot13\x86R.")
    (folder / "batches.meta").write_bytes(payload)
    with pytest.raises(ValueError, match="rot13"):
        load_dataset("cifar10", root=tmp_path)


def test_missing_dataset_message(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("cifar10", root=tmp_path)
    msg = str(info.value)
    assert str(tmp_path / "cifar-10-batches-py") in msg and "download=True" in msg
    assert "cifar-10-python.tar.gz" in msg
    st = dataset_status("cifar10", tmp_path)
    assert not st.available and st.location is None and str(tmp_path) in st.message
    assert not dataset_status("celeba", tmp_path).available
    with pytest.raises(DatasetNotFoundError, match="celeba"):
        load_dataset("celeba", root=tmp_path)


def test_fashion_mnist_missing_lists_folders(tmp_path, monkeypatch):
    import stg_core.data as data

    monkeypatch.setattr(data, "_DEBIAN_FASHION", tmp_path / "no-debian")
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("fashion_mnist", root=tmp_path / "mine")
    msg = str(info.value)
    for folder in (tmp_path / "mine", tmp_path / "mine" / "FashionMNIST" / "raw",
                   default_data_root() / "fashion_mnist", tmp_path / "no-debian"):
        assert f"- {folder}\n" in msg
    assert "apt-get install dataset-fashion-mnist" in msg and "download=True" in msg


# --------------------------------------------------------------------------- CelebA

def _write_celeba(root: Path) -> tuple[list[str], np.ndarray, list[int]]:
    from PIL import Image

    folder = root / "celeba"
    (folder / "img_align_celeba").mkdir(parents=True)
    names = [f"{i:06d}.jpg" for i in range(1, 7)]
    parts = [0, 0, 1, 2, 0, 2]
    rng = np.random.default_rng(0)
    attrs = rng.choice([-1, 1], size=(6, 40))
    attr_names = [f"Attr_{j}" for j in range(40)]
    for i, name in enumerate(names):
        img = np.full((30, 20, 3), 40 * i, np.uint8)  # non-square: gets center-cropped
        Image.fromarray(img).save(folder / "img_align_celeba" / name, quality=95)
    lines = [str(len(names)), " ".join(attr_names)]
    lines += [f"{n} " + " ".join(f"{v:2d}" for v in row) for n, row in zip(names, attrs)]
    (folder / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    (folder / "list_eval_partition.txt").write_text("".join(f"{n} {p}\n" for n, p in zip(names, parts)))
    return names, attrs, parts


def test_celeba(tmp_path):
    _, attrs, parts = _write_celeba(tmp_path)
    ds = load_dataset("celeba", root=tmp_path)
    assert ds.kind == "attributes" and len(ds.class_names) == 40 and ds.class_names[3] == "Attr_3"
    s = CELEBA_IMAGE_SIZE
    assert ds.x_train.shape == (3, s, s, 3) and ds.x_test.shape == (2, s, s, 3)
    assert ds.image_shape == (64, 64, 3) and ds.x_train.dtype == np.uint8
    train, test = [i for i, p in enumerate(parts) if p == 0], [i for i, p in enumerate(parts) if p == 2]
    np.testing.assert_array_equal(ds.y_train, (attrs[train] == 1).astype(np.uint8))
    np.testing.assert_array_equal(ds.y_test, (attrs[test] == 1).astype(np.uint8))
    assert ds.y_train.dtype == np.uint8
    assert abs(int(ds.x_test[1].mean()) - 200) <= 3  # image 6 (index 5) is gray 200
    sub = load_dataset("celeba", root=tmp_path, subset=2, test_subset=1, seed=0)
    assert sub.x_train.shape[0] == 2 and sub.y_test.shape == (1, 40)
    assert dataset_status("celeba", tmp_path).available


# --------------------------------------------------------------------------- npz

def _x(n: int = 12, hw: int = 6) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, hw, hw), dtype=np.uint8)


def _save(tmp_path: Path, **arrays) -> Path:
    path = tmp_path / "user.npz"
    np.savez(path, **arrays)
    return path


def test_npz_labels(tmp_path):
    y = np.arange(12) % 3
    path = _save(tmp_path, x=_x(), y=y, class_names=np.array(["cat", "dog", "fox"]))
    ds = load_dataset("npz", root=path)
    assert ds.kind == "classes" and ds.image_shape == (6, 6, 1)
    assert len(ds.x_train) == 9 and len(ds.x_test) == 3 and sorted(ds.y_test) == [0, 1, 2]  # stratified
    assert ds.class_names == ("cat", "dog", "fox") and ds.source == str(path)
    assert dataset_status("npz", path).available and not dataset_status("npz").available


def test_npz_attributes_with_test_split(tmp_path):
    att = np.random.default_rng(0).integers(0, 2, (12, 4))
    rgb = _x()[..., None].repeat(3, -1)
    path = _save(tmp_path, x=rgb, attributes=att, x_test=rgb[:5], attributes_test=att[:5])
    ds = load_dataset("npz", root=path)
    assert ds.kind == "attributes" and ds.y_train.dtype == np.uint8 and ds.y_train.shape == (12, 4)
    assert ds.x_test.shape == (5, 6, 6, 3) and ds.class_names == ("0", "1", "2", "3")


@pytest.mark.parametrize("arrays, match", [
    ({"y": np.arange(12) % 2}, "missing array 'x'"),
    ({"x": _x().astype(np.float32), "y": np.arange(12) % 2}, "uint8"),
    ({"x": _x()[:, 0], "y": np.arange(12) % 2}, "ndim"),
    ({"x": _x(), "y": np.arange(11) % 2}, "length mismatch"),
    ({"x": _x(), "y": np.arange(12) % 2 - 1}, "negative"),
    ({"x": _x(), "y": (np.arange(12) % 2).astype(float)}, "integers"),
    ({"x": _x(), "y": np.arange(12) % 2, "class_names": np.array(["a", "b", "c"])}, "count mismatch"),
    ({"x": _x(), "attributes": np.full((12, 2), 2)}, "0/1"),
    ({"x": _x(), "y": np.zeros(12, int)}, "at least 2 classes"),
    ({"x": _x(), "y": np.arange(12) % 2, "attributes": np.zeros((12, 2))}, "exactly one"),
])
def test_npz_invalid(tmp_path, arrays, match):
    with pytest.raises(ValueError, match=match):
        load_dataset("npz", root=_save(tmp_path, **arrays))


def test_npz_not_an_archive_and_object_arrays(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"definitely not a zip file")
    with pytest.raises(ValueError, match="not a valid .npz"):
        load_dataset("npz", root=bad)
    path = tmp_path / "obj.npz"
    np.savez(path, x=np.array([_Evil(tmp_path / "pwned")], dtype=object), y=np.array([0]))
    with pytest.raises(ValueError, match="object array"):
        load_dataset("npz", root=path)
    assert not (tmp_path / "pwned").exists()
    with pytest.raises(DatasetNotFoundError):
        load_dataset("npz", root=tmp_path / "nope.npz")
    with pytest.raises(ValueError, match="root="):
        load_dataset("npz")


def test_dataset_validates_shapes():
    x = np.zeros((3, 2, 2, 1), np.uint8)
    with pytest.raises(ValueError):
        Dataset("t", x, np.zeros(2, np.int64), x, np.zeros(3, np.int64), ("a",))
