import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from stg_core.config import ExperimentSpec, TrainConfig, spec_from_preset
from stg_core.datamaps import data_map, data_maps_at
from stg_core.models import build_model
from stg_core.store import ArtifactStore
from stg_core.tasks import Task
from stg_core.training import (MultiTaskTrainer, TrainingData, binary_counts, pos_weights, resolve_device,
                               scores_from_counts, seeded_model, train_run)


def _toy_data(n=96, n_tasks=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, 8, 8, 1), dtype=np.uint8)
    y = (rng.random((n, n_tasks)) < 0.3).astype(np.uint8)
    y[0] = 1  # every task has a positive
    return TrainingData.from_arrays(x, y, x[:40], y[:40], torch.device("cpu"))


def test_recorder_matches_a_naive_per_sample_loop():
    data = _toy_data()
    trainer = MultiTaskTrainer(build_model("small_cnn", 1, 8, 4), data, batch_size=32, seed=1)
    captured = []
    hook = trainer.model.heads.register_forward_hook(
        lambda module, inp, out: captured.append(out.detach().clone()) if module.training else None)
    batches = trainer.batches(1)
    p_true = trainer.train_epoch(1)["p_true"]
    hook.remove()
    assert p_true.shape == (4, 96) and p_true.dtype == np.float16
    y = data.y_train.numpy()
    naive = np.full((4, 96), np.nan)
    for index, logits in zip(batches, captured):
        for row, i in enumerate(index.tolist()):
            for t in range(4):
                sigma = 1 / (1 + np.exp(-float(logits[row, t])))
                naive[t, i] = 1 - abs(y[i, t] - sigma)  # the original's formula
    assert not np.isnan(naive).any()
    np.testing.assert_allclose(p_true.astype(np.float64), naive, atol=1e-3)


def test_data_map_matches_naive_statistics_and_first_epoch_is_zero_variability():
    rng = np.random.default_rng(0)
    epochs = [rng.random((3, 50)).astype(np.float16) for _ in range(4)]
    dm1 = data_map(epochs[:1])
    assert np.all(dm1.variability == 0) and not np.isnan(dm1.variability).any()
    dm = data_map(epochs)
    stacked = np.stack(epochs).astype(np.float64)
    for t in range(3):
        for i in range(50):
            assert dm.confidence[t, i] == pytest.approx(np.mean(stacked[:, t, i]))
            assert dm.variability[t, i] == pytest.approx(np.std(stacked[:, t, i]), abs=1e-7)
            assert dm.correctness[t, i] == pytest.approx(np.mean(stacked[:, t, i] > 0.5))
    with pytest.raises(ValueError, match="at least one"):
        data_map([])


def test_pos_weight_and_vectorised_loss_equal_the_per_task_loop():
    y = np.array([[1, 0], [0, 0], [0, 1], [0, 1]], dtype=np.uint8)
    np.testing.assert_allclose(pos_weights(y), [3.0, 1.0])
    data = _toy_data()
    trainer = MultiTaskTrainer(build_model("small_cnn", 1, 8, 4), data, task_weights=np.array([1, 0.5, 0, 2]))
    logits = torch.randn(96, 4)
    loss = (trainer.loss_per_task(logits, data.y_train) * trainer.task_weights).sum()
    loop = sum(w * torch.nn.BCEWithLogitsLoss(pos_weight=trainer.pos_weight[t])(logits[:, t], data.y_train[:, t])
               for t, w in enumerate([1, 0.5, 0, 2]))
    assert float(loss) == pytest.approx(float(loop), rel=1e-5)


def test_scores_equal_scikit_learn_and_never_nan():
    rng = np.random.default_rng(0)
    y = rng.random((200, 5)) < 0.3
    pred = rng.random((200, 5)) < 0.4
    pred[:, 4] = False  # nothing predicted positive: F1 0, not NaN
    scores = scores_from_counts(binary_counts(torch.from_numpy(pred), torch.from_numpy(y)).numpy())
    for t in range(5):
        assert scores["f1"][t] == pytest.approx(f1_score(y[:, t], pred[:, t], zero_division=0))
        assert scores["accuracy"][t] == pytest.approx(accuracy_score(y[:, t], pred[:, t]))
        assert scores["balanced_accuracy"][t] == pytest.approx(balanced_accuracy_score(y[:, t], pred[:, t]))
    assert scores["f1"][4] == 0.0


def test_batches_cover_every_sample_once_and_are_seeded():
    data = _toy_data(n=97)
    trainer = MultiTaskTrainer(build_model("small_cnn", 1, 8, 4), data, batch_size=32, seed=3)
    batches = trainer.batches(2)
    assert sorted(torch.cat(batches).tolist()) == list(range(97))
    assert min(len(b) for b in batches) >= 2
    assert all(torch.equal(a, b) for a, b in zip(batches, trainer.batches(2)))
    assert not torch.equal(batches[0], trainer.batches(3)[0])


def test_bad_task_weights_and_device():
    with pytest.raises(ValueError, match="task_weights"):
        MultiTaskTrainer(build_model("small_cnn", 1, 8, 4), _toy_data(), task_weights=np.array([1.0, -1, 0, 0]))
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            resolve_device("cuda")


def _digits_spec(tasks=None, epochs=3, **train):
    if tasks is None:
        return spec_from_preset("digits-g2", subset=400, test_subset=120, train=TrainConfig(epochs=epochs, **train))
    return ExperimentSpec("digits", tasks, TrainConfig(epochs=epochs, **train), subset=400, test_subset=120)


def test_every_head_starts_independently(tmp_path):
    """No head is arranged to match another: a duplicate and a complement start from heads of
    their own (neither equal nor mirrored), so whatever they share comes from training."""
    tasks = (Task("3", "classes", ("3",)), Task("three", "classes", ("3",)), Task("Round", "classes", ("0", "6", "8")),
             Task("Not round", "classes", tuple("1234579")), Task("noise", "random"))
    heads = seeded_model(_digits_spec(tasks), (8, 8, 1)).heads.weight.detach()
    for i in range(len(tasks)):
        for j in range(i + 1, len(tasks)):
            assert not torch.allclose(heads[i], heads[j]) and not torch.allclose(heads[i], -heads[j])
    store = ArtifactStore(tmp_path)
    run_id = train_run(_digits_spec(tasks), store)
    dm = data_map(store.iter_p_true(run_id, 3))
    assert not np.array_equal(dm.confidence[0], dm.confidence[1])  # not identical by construction
    # ... yet after 3 epochs a duplicate's map is already closer to its original than another task's (0.044 vs 0.081)
    same = np.abs(dm.confidence[0] - dm.confidence[1]).mean()
    assert same < np.abs(dm.confidence[0] - dm.confidence[2]).mean()


def test_heads_follow_the_task_not_its_position():
    spec = _digits_spec()
    reordered = ExperimentSpec("digits", spec.tasks[::-1], spec.train)
    a, b = seeded_model(spec, (8, 8, 1)), seeded_model(reordered, (8, 8, 1))
    torch.testing.assert_close(a.heads.weight, b.heads.weight.flip(0))
    torch.testing.assert_close(a.trunk[0].weight, b.trunk[0].weight)


def test_training_run_writes_every_artifact_and_is_reused(tmp_path):
    store = ArtifactStore(tmp_path)
    spec = _digits_spec()
    run_id = train_run(spec, store)
    assert run_id == spec.run_id()
    status = store.read_status(run_id)
    assert status["state"] == "completed" and status["epochs_done"] == 3
    assert store.recorded_epochs(run_id) == [1, 2, 3]
    p = store.load_p_true(run_id, 2)
    assert p.shape == (15, 400) and p.dtype == np.float16 and np.isfinite(p).all()
    rows = store.read_metrics(run_id)
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert len(rows[-1]["test"]["f1"]) == 15 and len(rows[-1]["train"]["f1"]) == 15
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    balanced = [np.mean(r["test"]["balanced_accuracy"]) for r in rows]
    assert balanced[-1] > balanced[0] and balanced[-1] > 0.6  # learning, above chance (0.5)
    assert store.read_array(run_id, "samples/labels").shape == (400, 15)
    assert store.load_spec(run_id) == spec
    before = (tmp_path / "runs" / run_id / "metrics.json").stat().st_mtime_ns
    assert train_run(spec, store) == run_id  # identical finished run: reused, not retrained
    assert (tmp_path / "runs" / run_id / "metrics.json").stat().st_mtime_ns == before


def test_stopped_run_resumes_to_the_same_result(tmp_path):
    spec = _digits_spec(epochs=4)
    full = ArtifactStore(tmp_path / "full")
    train_run(spec, full)
    part = ArtifactStore(tmp_path / "part")
    calls = []
    run_id = train_run(spec, part, should_stop=lambda: calls.append(1) or len(calls) >= 2)
    assert part.read_status(run_id)["state"] == "interrupted"
    assert part.read_status(run_id)["epochs_done"] == 2
    train_run(spec, part)
    _assert_same_run(full, part, run_id, 4)


def test_stopped_colour_run_resumes_to_the_same_result(tmp_path):
    """32 px colour images train channels_last with fused Adam: the resumed optimiser state must
    be restored in each parameter's own memory layout, or the resumed epochs differ."""
    from tests.cifar_files import write_cifar10

    root = write_cifar10(tmp_path / "data", per_batch=60, n_test=50)
    spec = spec_from_preset("cifar10-g1", data_root=str(root), train=TrainConfig(epochs=3, batch_size=64))
    full = ArtifactStore(tmp_path / "full")
    run_id = train_run(spec, full)
    part = ArtifactStore(tmp_path / "part")
    calls = []
    train_run(spec, part, should_stop=lambda: calls.append(1) or len(calls) >= 1)
    assert part.read_status(run_id)["epochs_done"] == 1
    trainer_probe = MultiTaskTrainer(seeded_model(spec, (32, 32, 3)), TrainingData.from_arrays(
        np.zeros((4, 32, 32, 3), np.uint8), np.ones((4, 10)), np.zeros((1, 32, 32, 3), np.uint8), np.ones((1, 10)),
        torch.device("cpu")), record=False)
    assert trainer_probe.channels_last  # the case the resume must handle
    train_run(spec, part)
    _assert_same_run(full, part, run_id, 3)


def _assert_same_run(a: ArtifactStore, b: ArtifactStore, run_id: str, epochs: int) -> None:
    assert b.read_status(run_id)["state"] == "completed"
    assert a.statistics_epochs(run_id) == b.statistics_epochs(run_id) == list(range(1, epochs + 1))
    for e in range(1, epochs + 1):
        np.testing.assert_array_equal(a.load_p_true(run_id, e), b.load_p_true(run_id, e))
        np.testing.assert_array_equal(a.load_grams(run_id, [e])[e], b.load_grams(run_id, [e])[e])
        np.testing.assert_array_equal(a.load_summary(run_id, e), b.load_summary(run_id, e))
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(a.read_metrics(run_id)) == strip(b.read_metrics(run_id))
    wa, _ = a.load_checkpoint(run_id)
    wb, _ = b.load_checkpoint(run_id)
    assert wa.keys() == wb.keys()
    for k in wa:
        np.testing.assert_array_equal(wa[k], wb[k])


def test_data_maps_at_several_epochs_in_one_pass():
    rng = np.random.default_rng(1)
    epochs = [rng.random((2, 30)).astype(np.float16) for _ in range(5)]
    maps = data_maps_at(iter(epochs), [3, 1])
    assert [m.n_epochs for m in maps] == [1, 3]
    for m, e in zip(maps, [1, 3]):
        ref = data_map(epochs[:e])
        np.testing.assert_array_equal(m.confidence, ref.confidence)
        np.testing.assert_array_equal(m.variability, ref.variability)
    with pytest.raises(ValueError, match=r"epochs \[7\] are not recorded"):
        data_maps_at(iter(epochs), [2, 7])


def test_channel_statistics_equal_the_float_computation():
    from stg_core.training import channel_statistics

    x = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (300, 5, 4, 3), dtype=np.uint8))
    mean, std = channel_statistics(x, chunk=64)
    xf = x.double() / 255
    torch.testing.assert_close(mean, xf.mean(dim=(0, 1, 2)).float())
    torch.testing.assert_close(std, xf.std(dim=(0, 1, 2)).float())


def test_precision_setting_and_its_auto_rule(tmp_path, monkeypatch):
    import stg_core.training as training
    from stg_core.config import TrainConfig, spec_from_preset
    from stg_core.store import ArtifactStore

    with pytest.raises(ValueError, match="unknown precision 'fp16'"):
        TrainConfig(precision="fp16").validate()
    cpu = torch.device("cpu")
    monkeypatch.setattr(training, "cpu_has_amx", lambda: True)
    assert training.use_mixed_precision(cpu, (32, 32, 3))
    assert not training.use_mixed_precision(cpu, (8, 8, 1))      # digits: no gain, stays fp32
    assert not training.use_mixed_precision(cpu, (28, 28, 1))
    monkeypatch.setattr(training, "cpu_has_amx", lambda: False)
    assert not training.use_mixed_precision(cpu, (32, 32, 3))
    store = ArtifactStore(tmp_path)
    for precision, recorded in (("fp32", "float32"), ("bf16", "bfloat16"), ("auto", "float32")):
        spec = spec_from_preset("digits-g1", subset=100, train=TrainConfig(epochs=1, precision=precision))
        run_id = training.train_run(spec, store)
        assert store.read_status(run_id)["precision"] == recorded
    assert len(set(store.run_ids())) == 3  # the precision is part of the run id


@pytest.mark.slow  # trains twice to compare precisions
def test_bf16_autocast_learns_like_fp32(tmp_path):
    """Mixed precision changes rounding, not what is learned: same test F1 (to 0.05) and
    closely correlated data maps as the fp32 run."""
    from stg_core.config import TrainConfig, spec_from_preset
    from stg_core.store import ArtifactStore

    store = ArtifactStore(tmp_path)
    runs = {p: train_run(spec_from_preset("digits-g2", subset=800, train=TrainConfig(epochs=6, precision=p)), store)
            for p in ("fp32", "bf16")}
    f1 = {p: np.mean(store.read_metrics(r)[-1]["test"]["f1"]) for p, r in runs.items()}
    assert f1["fp32"] > 0.6 and abs(f1["fp32"] - f1["bf16"]) < 0.05
    maps = {p: data_map(store.iter_p_true(r, 6)) for p, r in runs.items()}
    corr = np.corrcoef(maps["fp32"].confidence.ravel(), maps["bf16"].confidence.ravel())[0, 1]
    assert corr > 0.9
