"""Property-based fuzzing of the validation entry points (issue 27): generated task files and
settings give either success or one ``ValueError`` of one line naming the field, and a failed
run leaves the store as it was."""

from __future__ import annotations

import functools
import json
import math
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from app.task_builder import to_tasks
from stg_core import training
from stg_core.config import ExperimentSpec, TrainConfig
from stg_core.data import load_dataset, subset_dataset
from stg_core.store import ArtifactStore
from stg_core.tasks import Task, tasks_from_text

TASK_FIELDS = ("name", "kind", "positives", "seed", "classes", "attribute")
SETTING_FIELDS = ("model", "epochs", "batch_size", "lr", "weight_decay", "seed", "precision", "feature_dim",
                  "subset", "test_subset", "data_seed")

# ---- generated JSON ----------------------------------------------------------------------

_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-10, 20), st.integers(-(2**80), 2**80),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.sampled_from(["0", "3", "9", "random", "flipped", "classes", "attribute", "", " ", "a\nb", "x" * 300]),
)
_json = st.recursive(_scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                     max_leaves=12)
_field_value = st.one_of(_json, st.lists(st.sampled_from([str(d) for d in range(10)]), max_size=4))
_name = st.text("abcdeXYZ019-_+é", min_size=1, max_size=10)  # wild names come from the mutations below
_valid_task = st.one_of(
    st.fixed_dictionaries({"name": _name,
                           "classes": st.one_of(st.sampled_from("0123456789"),
                                                st.lists(st.sampled_from("0123456789"), min_size=1, max_size=4))}),
    st.fixed_dictionaries({"name": _name, "kind": st.sampled_from(["random", "flipped"]),
                           "seed": st.integers(0, 2**32 - 1)}),
    st.fixed_dictionaries({"name": _name, "attribute": _name}),
    st.fixed_dictionaries({"name": _name, "kind": st.just("classes"),
                           "positives": st.lists(st.sampled_from("0123456789"), max_size=3),
                           "seed": st.integers(0, 9)}),
)


@st.composite
def _task(draw) -> object:
    """A valid task with up to two fields replaced, removed or added (or, rarely, any JSON)."""
    if draw(st.integers(0, 19)) == 0:
        return draw(_json)
    task = dict(draw(_valid_task))
    if draw(st.integers(0, 3)):  # most tasks are left valid, so that whole task sets get accepted too
        return task
    for field in draw(st.sets(st.sampled_from(TASK_FIELDS + ("extra",)), min_size=1, max_size=2)):
        if draw(st.booleans()) and field in task:
            del task[field]
        else:
            task[field] = draw(_field_value)
    return task


_tasks = st.lists(_task(), min_size=1, max_size=3)
_task_file = st.one_of(_tasks, _tasks, _tasks, st.fixed_dictionaries({"tasks": _tasks}), st.just([]), _json)


def _json_text(obj) -> str:
    return json.dumps(obj, allow_nan=True)


def _assert_one_line_naming(exc: ValueError, fields: tuple[str, ...]) -> None:
    message = str(exc)
    assert message and "\n" not in message, message
    assert any(re.search(rf"\b{f}\b", message) for f in fields) or "task file" in message, message


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(obj=_task_file, raw=st.one_of(st.none(), st.none(), st.none(), st.binary(max_size=40)))
def test_generated_task_files_are_tasks_or_one_line_errors(obj, raw):
    text = raw if raw is not None else _json_text(obj)
    try:
        tasks = tasks_from_text(text, "'fuzz.json'")
    except ValueError as exc:
        _assert_one_line_naming(exc, TASK_FIELDS + ("tasks",))
        event("refused")
        return
    event("accepted")
    assert tasks and all(isinstance(t, Task) for t in tasks)
    for t in tasks:  # what was accepted is well-typed, and round-trips through the page's rows
        assert isinstance(t.name, str) and all(isinstance(p, str) for p in t.positives)
        assert isinstance(t.seed, int) and 0 <= t.seed <= 2**32 - 1
    assert to_tasks([t.to_json() for t in tasks]) == tasks


# ---- generated settings --------------------------------------------------------------------

_hostile = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.integers(-(2**70), 2**70),
                     st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(["1", "", "inf", "auto"]),
                     st.lists(st.integers(), max_size=2))
_valid_settings = st.fixed_dictionaries({
    "model": st.sampled_from(("auto", "small_cnn", "small_cnn", "paper_cnn")),
    "epochs": st.integers(1, 10_000),
    "batch_size": st.integers(1, 65_536),
    "lr": st.floats(min_value=1e-6, max_value=10.0),
    "weight_decay": st.sampled_from([0.0, 1e-4, 1.0]),
    "seed": st.integers(0, 2**32 - 1),
    "precision": st.sampled_from(("auto", "fp32", "bf16")),
    "feature_dim": st.one_of(st.none(), st.integers(1, 256)),
    "subset": st.one_of(st.none(), st.integers(1, 1347)),
    "test_subset": st.one_of(st.none(), st.integers(1, 450)),
    "data_seed": st.integers(0, 2**32 - 1),
})
_near_edges = {"epochs": st.sampled_from([0, 10_001]), "batch_size": st.sampled_from([0, 65_537]),
               "lr": st.sampled_from([0.0, -1e-3, 10.000001, 1e30]), "seed": st.sampled_from([-1, 2**32, 2**63 - 1]),
               "data_seed": st.sampled_from([-1, 2**32, 2**63 - 1]), "subset": st.sampled_from([0, 1348, 10**12]),
               "test_subset": st.sampled_from([0, 451, 10**12]), "feature_dim": st.sampled_from([0, 65_537, 10**12]),
               "weight_decay": st.sampled_from([-1e-9, 1.5]), "model": st.sampled_from(["resnet", "AUTO"]),
               "precision": st.sampled_from(["fp16", "FP32"])}


@st.composite
def _settings(draw) -> dict:
    """Valid settings with up to two replaced by a value just out of range or of the wrong type."""
    values = dict(draw(_valid_settings))
    for field in draw(st.sets(st.sampled_from(SETTING_FIELDS), max_size=2)):
        values[field] = draw(st.one_of(_near_edges[field], _hostile))
    return values


@functools.lru_cache(maxsize=1)
def _digits():
    return load_dataset("digits")


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return ArtifactStore(tmp_path_factory.mktemp("fuzz-store"))


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(values=_settings())
def test_generated_settings_validate_or_fail_with_one_line_and_leave_the_store_alone(values, store, monkeypatch):
    # digits read once (the fuzz is about the checks, not about reading sklearn's files)
    monkeypatch.setattr(training, "load_dataset", lambda name, root=None, subset=None, test_subset=None, seed=0,
                        download=False: subset_dataset(_digits(), subset, test_subset, seed))
    train = {k: values[k] for k in ("model", "epochs", "batch_size", "lr", "weight_decay", "seed", "precision",
                                    "feature_dim")}
    tasks = (Task("round", "classes", ("0", "6", "8", "9")), Task("noise", "random", seed=1))
    spec = ExperimentSpec("digits", tasks, TrainConfig(**train), subset=values["subset"],
                          test_subset=values["test_subset"], data_seed=values["data_seed"])
    try:
        training.prepare_run(spec, device="cpu")
    except ValueError as exc:
        _assert_one_line_naming(exc, SETTING_FIELDS + ("images", "task"))
        before = _snapshot(store.root)
        with pytest.raises(ValueError):  # the run itself refuses before writing anything
            training.train_run(spec, store, device="cpu")
        assert _snapshot(store.root) == before
        event("refused")
        return
    event("accepted")
    # accepted: every setting has its type and a sane range
    cfg = spec.train
    assert isinstance(cfg.epochs, int) and 1 <= cfg.epochs and isinstance(cfg.batch_size, int)
    assert isinstance(cfg.lr, (int, float)) and math.isfinite(cfg.lr) and 0 < cfg.lr <= 10
    assert isinstance(cfg.seed, int) and 0 <= cfg.seed < 2**32
    assert isinstance(spec.data_seed, int) and 0 <= spec.data_seed < 2**32
