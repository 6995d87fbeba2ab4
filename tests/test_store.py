import json
import stat
import zlib

import diskcache

import numpy as np
import pytest

from stg_core.config import ExperimentSpec, TrainConfig, spec_from_preset
from stg_core.store import ArtifactStore, write_json
from stg_core.tasks import Task


def test_run_id_is_stable_and_covers_the_spec():
    spec = spec_from_preset("digits-g2", subset=500)
    assert spec.run_id() == spec_from_preset("digits-g2", subset=500).run_id()
    assert len(spec.run_id()) == 12
    # where the data is read from does not change what is learned
    assert spec.run_id() == spec_from_preset("digits-g2", subset=500, data_root="/elsewhere").run_id()
    others = [spec_from_preset("digits-g2", subset=501), spec.with_train(lr=2e-3), spec.with_train(seed=1),
              spec_from_preset("digits-g1", subset=500),
              ExperimentSpec("digits", spec.tasks[:-1] + (Task("Random", "random", seed=1),), subset=500,
                             preset="digits-g2")]
    assert len({o.run_id() for o in others} | {spec.run_id()}) == len(others) + 1


def test_feature_dim_changes_the_run_id_only_when_set():
    """``TrainConfig.feature_dim`` came later: at its default (None) it is left out of the hash,
    so the ids of runs stored before keep pointing at them (this id was computed before it existed)."""
    import hashlib

    from stg_core.config import TRAINING_VERSION

    spec = spec_from_preset("digits-g2", subset=500)
    obj = spec.to_json()
    del obj["data_root"], obj["train"]["feature_dim"]  # the spec as hashed before feature_dim existed
    text = json.dumps({**obj, "training_version": TRAINING_VERSION}, sort_keys=True, separators=(",", ":"))
    assert spec.run_id() == hashlib.sha256(text.encode()).hexdigest()[:12]
    narrow = spec.with_train(feature_dim=8)
    assert narrow.run_id() not in (spec.run_id(), spec.with_train(feature_dim=16).run_id())
    back = ExperimentSpec.from_json(json.loads(json.dumps(narrow.to_json())))
    assert back == narrow and back.run_id() == narrow.run_id()


def test_spec_json_round_trip():
    spec = spec_from_preset("digits-g2", subset=500, train=TrainConfig(epochs=4, model="small_cnn"))
    back = ExperimentSpec.from_json(json.loads(json.dumps(spec.to_json())))
    assert back == spec and back.run_id() == spec.run_id()
    with pytest.raises(ValueError, match="unknown spec fields: bogus"):
        ExperimentSpec.from_json({**spec.to_json(), "bogus": 1})


def test_train_config_validation():
    with pytest.raises(ValueError, match="epochs=0"):
        TrainConfig(epochs=0).validate()
    with pytest.raises(ValueError, match="lr=-1"):
        TrainConfig(lr=-1).validate()
    with pytest.raises(ValueError, match="unknown model"):
        TrainConfig(model="vgg").validate()
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="feature_dim="):
            TrainConfig(feature_dim=bad).validate()
    with pytest.raises(ValueError, match=r"\(not resnet18_cifar, which has 512 features\)"):
        TrainConfig(model="resnet18_cifar", feature_dim=64).validate()
    TrainConfig(model="small_cnn", feature_dim=8).validate()


def test_store_layout_and_permissions(tmp_path):
    store = ArtifactStore(tmp_path / "s")
    assert stat.S_IMODE((tmp_path / "s").stat().st_mode) == 0o700
    spec = spec_from_preset("digits-g1")
    run_id = store.save_spec(spec)
    assert store.exists(run_id) and store.run_ids() == [run_id]
    assert store.read_status(run_id)["state"] == "created"
    store.write_p_true(run_id, 1, np.full((10, 5), 0.25, dtype=np.float32))
    p = store.load_p_true(run_id, 1)
    assert p.dtype == np.float16 and p.shape == (10, 5)
    assert store.recorded_epochs(run_id) == [1]
    with pytest.raises(ValueError, match="epoch 2 is not recorded"):
        store.load_p_true(run_id, 2)
    assert store.resolve(run_id[:4]) == run_id
    with pytest.raises(ValueError, match="no run"):
        store.resolve("ffff0000")
    runs = store.list_runs()
    assert runs[0]["id"] == run_id and runs[0]["n_tasks"] == 10 and runs[0]["state"] == "created"
    assert runs[0]["model"] == "auto" and runs[0]["feature_dim"] is None


@pytest.mark.parametrize("bad", ["../etc", "abc", "ABCDEF123456", "0123456789ab/..", ""])
def test_run_ids_cannot_escape_the_store(tmp_path, bad):
    with pytest.raises(ValueError, match="invalid run id"):
        ArtifactStore(tmp_path).run_dir(bad)


def test_array_names_cannot_escape_the_run(tmp_path):
    store = ArtifactStore(tmp_path)
    run_id = store.save_spec(spec_from_preset("digits-g1"))
    with pytest.raises(ValueError, match="invalid array name"):
        store.write_array(run_id, "../../x", np.zeros(2))


def test_checkpoint_round_trip_is_one_file_without_pickle(tmp_path):
    store = ArtifactStore(tmp_path)
    run_id = store.save_spec(spec_from_preset("digits-g1"))
    arrays = {"model/w": np.arange(6, dtype=np.float32).reshape(2, 3), "optim/0/step": np.array(3.0)}
    store.save_checkpoint(run_id, arrays, {"epoch": 2, "param_groups": [{"lr": 0.001}]})
    loaded, meta = store.load_checkpoint(run_id)
    assert meta["epoch"] == 2 and meta["param_groups"][0]["lr"] == 0.001
    np.testing.assert_array_equal(loaded["model/w"], arrays["model/w"])
    assert [p.name for p in (tmp_path / "runs" / run_id).glob("checkpoint*")] == ["checkpoint.npz"]


def test_failed_write_leaves_the_old_file_and_no_temp(tmp_path):
    path = tmp_path / "a.json"
    write_json(path, {"v": 1})

    class Boom:
        def __iter__(self):
            raise RuntimeError("boom")

    with pytest.raises(TypeError):
        write_json(path, {"v": Boom()})  # json.dumps fails before anything is replaced
    assert json.loads(path.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


class _Payload:
    """Unpickling this creates a marker file: proof that code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_index_never_unpickles_a_planted_entry(tmp_path):
    store = ArtifactStore(tmp_path)
    run_id = store.save_spec(spec_from_preset("digits-g1"))
    with store._index() as index:
        assert index.get(run_id)["state"] == "created"
    # An attacker with write access to the index stores a pickle under the same key, through
    # diskcache's default disk (JSONDisk encodes keys as zlib-compressed JSON bytes).
    marker = tmp_path / "pwned"
    key = zlib.compress(json.dumps(run_id).encode(), 1)
    with diskcache.Cache(str(tmp_path / "index")) as raw:
        raw.set(key, _Payload(str(marker)))
    with store._index() as index:
        with pytest.raises(ValueError, match="refusing a non-JSON entry"):
            index.get(run_id)
    assert not marker.exists()
