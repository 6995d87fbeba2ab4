import json

import numpy as np
import pytest

from stg_core.data import Dataset, load_dataset
from stg_core.tasks import PRESETS, Task, apply_flips, build_labels, get_preset, load_task_file, validate_tasks


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("digits")


def _attr_dataset() -> Dataset:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (20, 8, 8, 3), dtype=np.uint8)
    y = rng.integers(0, 2, (20, 2), dtype=np.uint8)
    return Dataset("toy", x, y, x[:6], y[:6], ("Smiling", "Young"))


def test_presets_of_the_paper_have_the_right_sizes():
    assert len(get_preset("cifar10-g1").tasks) == 10
    assert len(get_preset("cifar10-g2").tasks) == 15
    assert len(get_preset("cifar100-g3").tasks) == 100
    assert len(get_preset("celeba-g4").tasks) == 40
    for name, preset in PRESETS.items():
        assert len({t.name for t in preset.tasks}) == len(preset.tasks), name


def test_cifar10_g2_extras_match_the_original_definitions():
    tasks = {t.name: t for t in get_preset("cifar10-g2").tasks}
    assert set(tasks["Living being"].positives) == {"bird", "cat", "deer", "dog", "frog", "horse"}
    assert set(tasks["Not living being"].positives) == {"airplane", "automobile", "ship", "truck"}
    assert set(tasks["Odd-numbered"].positives) == {"automobile", "cat", "dog", "horse", "truck"}
    assert tasks["Downside"].kind == "flipped" and tasks["Random"].kind == "random"


@pytest.mark.parametrize("preset", ["digits-g2", "fashion_mnist-g2", "cifar10-g2"])
def test_g2_presets_have_complements_random_and_flipped(preset):
    p = get_preset(preset)
    kinds = [t.kind for t in p.tasks]
    assert kinds.count("random") == 1 and kinds.count("flipped") == 1
    class_sets = [frozenset(t.positives) for t in p.tasks if t.kind == "classes" and len(t.positives) > 1]
    n_classes = 10
    complements = [(a, b) for a in class_sets for b in class_sets if not a & b and len(a | b) == n_classes]
    assert complements, f"{preset} has no pair of exact complements"


def test_digits_g2_labels(digits):
    labels = build_labels(get_preset("digits-g2").tasks, digits)
    names = list(labels.names)
    y = labels.y_train
    assert y.shape == (len(digits.y_train), 15) and y.dtype == np.uint8
    np.testing.assert_array_equal(y[:, names.index("3")], digits.y_train == 3)
    np.testing.assert_array_equal(y[:, names.index("Round")], 1 - y[:, names.index("Not round")])
    flipped = y[:, names.index("Downside")]
    assert flipped.sum() == len(flipped) // 2
    np.testing.assert_array_equal(labels.flip_train, flipped.astype(bool))
    assert 0.4 < y[:, names.index("Random")].mean() < 0.6
    # seeded: the same definition gives the same labels
    np.testing.assert_array_equal(build_labels(get_preset("digits-g2").tasks, digits).y_train, y)


def test_flip_only_applies_when_a_flipped_task_is_present(digits):
    labels = build_labels(get_preset("digits-g1").tasks, digits)
    assert labels.flip_train is None and labels.flip_test is None
    assert apply_flips(digits.x_train, labels.flip_train) is digits.x_train
    labels2 = build_labels(get_preset("digits-g2").tasks, digits)
    flipped = apply_flips(digits.x_train, labels2.flip_train)
    i = int(np.flatnonzero(labels2.flip_train)[0])
    k = int(np.flatnonzero(~labels2.flip_train)[0])
    np.testing.assert_array_equal(flipped[i], digits.x_train[i, ::-1])
    np.testing.assert_array_equal(flipped[k], digits.x_train[k])


def test_attribute_tasks():
    ds = _attr_dataset()
    labels = build_labels((Task("smile", "attribute", ("Smiling",)),), ds)
    np.testing.assert_array_equal(labels.y_train[:, 0], ds.y_train[:, 0])


@pytest.mark.parametrize("tasks, message", [
    ((), "empty"),
    ((Task("a", "classes", ("7",)), Task("a", "classes", ("8",))), "duplicate task name 'a'"),
    ((Task("cat", "classes", ("cat",)),), "unknown class 'cat'"),
    ((Task("none", "classes", ()),), "no positive class"),
    ((Task("all", "classes", tuple(str(d) for d in range(10))),), "every class"),
    ((Task("s", "attribute", ("Smiling",)),), "attribute dataset"),
    ((Task("f1", "flipped"), Task("f2", "flipped", seed=1)), "only one flipped task"),
    ((Task("x", "weird"),), "unknown kind"),
    ((Task(" ", "random"),), "empty name"),
])
def test_bad_definitions_raise_naming_the_problem(digits, tasks, message):
    with pytest.raises(ValueError, match=message):
        build_labels(tasks, digits)


def test_class_task_on_attribute_dataset_and_flip_of_symmetric_images():
    with pytest.raises(ValueError, match="labelled dataset"):
        validate_tasks((Task("c", "classes", ("Smiling",)),), _attr_dataset())
    ds = _attr_dataset()
    sym = np.concatenate([ds.x_train[:, :4], ds.x_train[:, :4][:, ::-1]], axis=1)  # top half mirrored
    sym_ds = Dataset("sym", sym, ds.y_train, sym[:6], ds.y_test, ds.class_names)
    with pytest.raises(ValueError, match="unchanged by a vertical flip"):
        validate_tasks((Task("f", "flipped"),), sym_ds)


def test_task_without_positive_training_image(digits):
    tiny = Dataset("digits", digits.x_train[:5], np.zeros(5, dtype=np.int64), digits.x_test[:5],
                   digits.y_test[:5], digits.class_names)
    with pytest.raises(ValueError, match="task '1' has no positive training image"):
        build_labels((Task("1", "classes", ("1",)),), tiny)


def test_task_file_round_trip_and_errors(tmp_path, digits):
    path = tmp_path / "tasks.json"
    path.write_text(json.dumps({"tasks": [
        {"name": "small", "classes": ["0", "1"]},
        {"name": "seven", "classes": "7"},
        {"name": "noise", "kind": "random", "seed": 3},
        {"name": "upside", "kind": "flipped"},
    ]}))
    tasks = load_task_file(path)
    assert [t.kind for t in tasks] == ["classes", "classes", "random", "flipped"]
    assert tasks[1].positives == ("7",) and tasks[2].seed == 3
    assert build_labels(tasks, digits).y_train.shape[1] == 4
    assert Task.from_json(tasks[0].to_json()) == tasks[0]

    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_task_file(bad)
    with pytest.raises(ValueError, match="does not exist"):
        load_task_file(tmp_path / "missing.json")
    bad.write_text(json.dumps({"tasks": []}))
    with pytest.raises(ValueError, match="non-empty list"):
        load_task_file(bad)
    bad.write_text(json.dumps([{"classes": ["1"]}]))
    with pytest.raises(ValueError, match="'name'"):
        load_task_file(bad)


def test_unknown_preset():
    with pytest.raises(ValueError, match="unknown preset 'nope'"):
        get_preset("nope")
