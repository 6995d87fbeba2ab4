"""Hostile and careless input (issue 27, rows 3-9 and 11): every loader bounds what it allocates
before allocating, and every bad task file, data file or setting gives one line naming the field,
exit status 2 on the command line, and nothing in the store. Each test writes its own files."""

from __future__ import annotations

import gzip
import io
import json
import pickle
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import numpy as np
import pytest

from app.state import APP_SCRIPT
from stg_core import data as data_module
from stg_core.data import MAX_CLASSES, MAX_DATA_BYTES, load_dataset
from tests.cifar_files import write_cifar10

ROOT = Path(__file__).resolve().parents[1]


def _npz_declaring(path: Path, shape: tuple[int, ...], payload: int = 1000) -> Path:
    """An .npz whose 'x' header declares ``shape`` uint8 but holds only ``payload`` bytes."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False, "shape": shape})
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("x.npy", header.getvalue() + bytes(payload))
        buf = io.BytesIO()
        np.save(buf, np.arange(8) % 2)
        zf.writestr("y.npy", buf.getvalue())
    return path


# --------------------------------------------------------------------------- row 3: npz shapes


def test_row3_npz_declaring_huge_array_refused_before_allocation(tmp_path):
    path = _npz_declaring(tmp_path / "big.npz", (8000, 1000, 1000))
    with pytest.raises(ValueError, match="MAX_DATA_BYTES") as info:
        load_dataset("npz", root=path)
    assert "\n" not in str(info.value)


def test_row3_bare_npy_and_truncated_npz_refused(tmp_path):
    npy = tmp_path / "bare.npz"
    with open(npy, "wb") as f:  # a bare .npy that declares 8 GB: np.load would read it whole
        np.lib.format.write_array_header_1_0(f, {"descr": "|u1", "fortran_order": False, "shape": (8 * 2**30,)})
    with pytest.raises(ValueError, match="not a zip archive"):
        load_dataset("npz", root=npy)
    small = _npz_declaring(tmp_path / "short.npz", (10, 8, 8))  # 640 bytes declared, 1000 present: fine...
    with pytest.raises(ValueError, match="length mismatch"):  # ... up to the label count
        load_dataset("npz", root=small)
    short = _npz_declaring(tmp_path / "trunc.npz", (100, 8, 8), payload=10)
    with pytest.raises(ValueError, match="declares 6400 bytes but holds 10"):
        load_dataset("npz", root=short)


def test_row3_upload_limit_matches_the_data_limit():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["maxUploadSize"] * 2**20 == MAX_DATA_BYTES


def test_row3_idx_header_checked_before_reading(tmp_path):
    folder = tmp_path / "fashion"
    folder.mkdir()
    header = bytes([0, 0, 8, 3]) + np.array([100_000, 4000, 4000], ">u4").tobytes()  # 1.6 TB declared
    with gzip.open(folder / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(header + bytes(100))
    with pytest.raises(ValueError, match="MAX_DATA_BYTES"):
        data_module._read_idx(folder / "train-images-idx3-ubyte.gz", 3)


# --------------------------------------------------------------------------- row 4: label range


@pytest.mark.parametrize("label", [10**12, 10**7, MAX_CLASSES])
def test_row4_npz_label_over_max_classes_refused(tmp_path, label):
    y = np.arange(12) % 2
    y[3] = label
    path = tmp_path / "labels.npz"
    np.savez(path, x=np.zeros((12, 6, 6), np.uint8), y=y)
    with pytest.raises(ValueError, match=f"MAX_CLASSES={MAX_CLASSES}"):
        load_dataset("npz", root=path)


# --------------------------------------------------------------------------- row 5: CIFAR pickles


class _Reduce:
    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.mark.parametrize("payload", [
    _Reduce(bytes, (0xC000000000,)),
    _Reduce(np.ndarray, ((10**12,),)),
    _Reduce(np.ndarray, ((10**6, 10**6), np.dtype("u1"))),
])
def test_row5_cifar_pickle_allocation_capped(tmp_path, payload):
    root = write_cifar10(tmp_path, per_batch=4, n_test=4)
    batch = root / "cifar-10-batches-py" / "data_batch_2"
    batch.write_bytes(pickle.dumps(payload, protocol=2))
    assert batch.stat().st_size < 200  # a few bytes that ask for gigabytes
    with pytest.raises(ValueError, match="MAX_DATA_BYTES"):
        load_dataset("cifar10", root=root)


def test_row5_cifar_reconstruct_shape_capped(tmp_path):
    root = write_cifar10(tmp_path, per_batch=4, n_test=4)
    reconstruct = np.zeros(1).__reduce__()[0]
    batch = root / "cifar-10-batches-py" / "test_batch"
    batch.write_bytes(pickle.dumps(_Reduce(reconstruct, (np.ndarray, (10**7, 10**6), b"b")), protocol=2))
    with pytest.raises(ValueError, match="MAX_DATA_BYTES"):
        load_dataset("cifar10", root=root)


@pytest.mark.parametrize("batch, change", [
    ("data_batch_1", {b"labels": [10**30] * 4}),
    ("data_batch_1", {b"labels": None}),
    ("batches.meta", {b"label_names": 5}),
    ("batches.meta", {b"other": []}),
])
def test_row5_cifar_malformed_entries_are_messages(tmp_path, batch, change):
    root = write_cifar10(tmp_path, per_batch=4, n_test=4)
    path = root / "cifar-10-batches-py" / batch
    d = pickle.loads(path.read_bytes())
    d = change if batch == "batches.meta" else {**d, **change}
    path.write_bytes(pickle.dumps(d, protocol=2))
    with pytest.raises(ValueError, match=batch):
        load_dataset("cifar10", root=root)


def test_celeba_undecodable_image_is_a_message(tmp_path):
    folder = tmp_path / "celeba"
    (folder / "img_align_celeba").mkdir(parents=True)
    (folder / "list_attr_celeba.txt").write_text("2\nSmiling Young\n000001.jpg 1 -1\n000002.jpg -1 1\n")
    (folder / "list_eval_partition.txt").write_text("000001.jpg 0\n000002.jpg 2\n")
    (folder / "img_align_celeba" / "000001.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="000001.jpg: cannot decode"):
        load_dataset("celeba", root=tmp_path)


# --------------------------------------------------------------------------- command line: rc 2, one line


def _cli(*args: str, store: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stg_core", "train", "--store", str(store), "-q", *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)


def _assert_refused(proc: subprocess.CompletedProcess, store: Path, *fields: str) -> None:
    """Exit status 2, one line on stderr naming every field, no traceback, no run in the store."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for field in fields:
        assert field in lines[0], (field, lines[0])
    runs = store / "runs"
    assert not runs.exists() or not any(runs.iterdir())


def _task_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tasks.json"
    path.write_text(text)
    return path


@pytest.mark.slow  # a command-line subprocess
@pytest.mark.parametrize("text, fields", [
    ('[{"name": "Round", "classes": null}]', ("'Round'", "'classes'")),
    ('[{"name": "Round", "positives": 5}]', ("'Round'", "'positives'")),
    ('[{"name": "Noise", "kind": "random", "seed": null}]', ("'Noise'", "'seed'")),
    ('[{"name": "Noise", "kind": "random", "seed": 1e400}]', ("'Noise'", "'seed'")),
    ("[" * 100_000 + "]" * 100_000, ("'tasks'", "nested")),
], ids=["classes-null", "positives-5", "seed-null", "seed-1e400", "nested-lists"])
def test_row6_malformed_task_files_are_one_line_errors(tmp_path, text, fields):
    proc = _cli("--dataset", "digits", "--tasks-file", str(_task_file(tmp_path, text)), store=tmp_path / "store")
    _assert_refused(proc, tmp_path / "store", *fields)


@pytest.mark.slow  # a command-line subprocess
@pytest.mark.parametrize("lr", ["inf", "1e30"])  # nan: test_row7_settings_out_of_range
def test_row7_absurd_learning_rates_refused_up_front(tmp_path, lr):
    proc = _cli("--preset", "digits-g2", "--epochs", "1", "--lr", lr, store=tmp_path / "store")
    _assert_refused(proc, tmp_path / "store", "lr=")


@pytest.mark.slow  # a command-line subprocess
def test_row8_missing_npz_is_one_line(tmp_path):
    tasks = _task_file(tmp_path, '[{"name": "zero", "classes": ["0"]}]')
    proc = _cli("--dataset", "npz", "--data-root", str(tmp_path / "nonexistent.npz"), "--tasks-file", str(tasks),
                store=tmp_path / "store")
    _assert_refused(proc, tmp_path / "store", "--data-root", "nonexistent.npz")


@pytest.mark.slow  # a command-line subprocess
def test_row9_seed_beyond_64_bits_leaves_no_run(tmp_path):
    proc = _cli("--preset", "digits-g2", "--epochs", "1", "--seed", "1180591620717411303424", store=tmp_path / "store")
    _assert_refused(proc, tmp_path / "store", "seed=")


@pytest.mark.slow  # a command-line subprocess
@pytest.mark.parametrize("size, field", [(0, "'x'"), (1, "small_cnn")])
def test_row9_images_too_small_leave_no_run(tmp_path, size, field):
    path = tmp_path / "tiny.npz"
    np.savez(path, x=np.zeros((40, size, size), np.uint8), y=np.arange(40) % 2)
    tasks = _task_file(tmp_path, '[{"name": "one", "classes": ["1"]}]')
    proc = _cli("--dataset", "npz", "--data-root", str(path), "--tasks-file", str(tasks), "--epochs", "1",
                store=tmp_path / "store")
    _assert_refused(proc, tmp_path / "store", field)


# --------------------------------------------------------------------------- row 11: silent acceptance


@pytest.mark.parametrize("task, field", [
    ({"name": "Three", "classes": {"3": 1}}, "'classes'"),
    ({"name": "Noise", "kind": "random", "seed": 1.7}, "'seed'"),
    ({"name": "Noise", "kind": "random", "seed": -3}, "'seed'"),
    ({"name": "Noise", "kind": "random", "seed": True}, "'seed'"),
])
def test_row11_wrong_types_name_task_and_field(task, field):
    from stg_core.tasks import tasks_from_text

    with pytest.raises(ValueError, match=f"task '{task['name']}': {field}"):
        tasks_from_text(json.dumps([task]))


@pytest.mark.slow  # a command-line subprocess
def test_row11_cli_names_task_and_field(tmp_path):
    tasks = _task_file(tmp_path, '[{"name": "Noise", "kind": "random", "seed": -3}]')
    proc = _cli("--dataset", "digits", "--tasks-file", str(tasks), store=tmp_path / "store")
    _assert_refused(proc, tmp_path / "store", "'Noise'", "'seed'")


# --------------------------------------------------------------------------- row 7: non-finite loss


def test_row7_non_finite_loss_fails_the_run_naming_epoch_and_lr(tmp_path, monkeypatch):
    from stg_core import training
    from stg_core.config import TrainConfig, spec_from_preset
    from stg_core.store import ArtifactStore

    real_epoch = training.MultiTaskTrainer.train_epoch

    def diverging(self, epoch, *args, **kwargs):  # what an lr that blows up the weights leads to
        out = real_epoch(self, epoch, *args, **kwargs)
        return {**out, "train_loss": float("nan")} if epoch == 2 else out

    monkeypatch.setattr(training.MultiTaskTrainer, "train_epoch", diverging)
    store = ArtifactStore(tmp_path / "store")
    spec = spec_from_preset("digits-g1", subset=200, test_subset=50, train=TrainConfig(epochs=3, lr=0.5))
    with pytest.raises(ValueError, match="epoch 2 .* lr=0.5"):
        training.train_run(spec, store)
    status = store.read_status(spec.run_id())
    assert status["state"] == "failed" and "epoch 2" in status["error"] and "lr=0.5" in status["error"]
    assert [row["epoch"] for row in store.read_metrics(spec.run_id())] == [1]


@pytest.mark.parametrize("changes, field", [
    ({"lr": float("inf")}, "lr"), ({"lr": 1e30}, "lr"), ({"lr": float("nan")}, "lr"), ({"lr": 0.0}, "lr"),
    ({"epochs": 2.5}, "epochs"), ({"batch_size": True}, "batch_size"), ({"seed": 2**63 - 1}, "seed"),
    ({"seed": -1}, "seed"), ({"weight_decay": float("inf")}, "weight_decay"), ({"feature_dim": 10**12}, "feature_dim"),
])
def test_row7_settings_out_of_range(changes, field):
    from stg_core.config import TrainConfig

    with pytest.raises(ValueError, match=field):
        TrainConfig(**changes).validate()


# --------------------------------------------------------------------------- the Experiment page


def _experiment_page(store: Path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("STG_STORE", str(store))
    at = AppTest.from_file(APP_SCRIPT, default_timeout=120).run()
    return at.switch_page("../pages/experiment.py").run()


def test_row6_page_shows_bad_task_files_as_messages(tmp_path, monkeypatch):
    from stg_core import tasks as tasks_module
    from stg_core.store import ArtifactStore

    at = _experiment_page(tmp_path / "store", monkeypatch)
    at.radio(key="task_source").set_value("Custom").run()
    files = [("[" * 100_000 + "]" * 100_000, "'tasks'"),
             ('[{"name": "Noise", "kind": "random", "seed": 1e400}]', "'seed'"),
             ('[{"name": "Three", "classes": {"3": 1}}]', "'classes'")]
    for text, field in files:
        at.file_uploader(key="tasks_file").set_value(("t.json", text.encode(), "application/json")).run()
        at.button(key="add_file").click().run()
        assert not at.exception
        assert any(field in e.value and "\n" not in e.value for e in at.error), [e.value for e in at.error]
    # whatever a parser raises reaches the user as a message, not a traceback
    def broken(content, source=""):
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(tasks_module, "tasks_from_text", broken)
    at.run()  # the button's callback is the one the last script run registered
    at.button(key="add_file").click().run()
    assert not at.exception and any("recursion" in e.value for e in at.error)
    assert ArtifactStore(tmp_path / "store").run_ids() == []


def test_row9_page_refuses_images_too_small_for_the_model(tmp_path, monkeypatch, submitted):
    from stg_core.store import ArtifactStore

    buffer = io.BytesIO()
    np.savez(buffer, x=np.zeros((40, 1, 1), np.uint8), y=np.arange(40) % 2)
    at = _experiment_page(tmp_path / "store", monkeypatch)
    at.selectbox(key="dataset").set_value("npz").run()
    at.file_uploader(key="npz_upload").set_value(("tiny.npz", buffer.getvalue(), "application/octet-stream")).run()
    at.radio(key="task_source").set_value("Custom").run()
    at.multiselect(key="new_classes").set_value(["1"]).run()
    at.button(key="add_classes").click().run()
    assert not at.exception
    assert any("small_cnn needs images of at least 4x4" in e.value for e in at.error), [e.value for e in at.error]
    assert not any(b.key == "launch" for b in at.button)
    assert submitted == [] and ArtifactStore(tmp_path / "store").run_ids() == []
