"""Fixtures shared by several test files."""

import pytest

from stg_core import jobs
from stg_core.config import TrainConfig, spec_from_preset
from stg_core.store import ArtifactStore
from stg_core.training import train_run

#: Training epochs of the planted run: enough for STG's data maps and TAG's affinities to show
#: the planted split on digits (about 10 s on two CPU cores).
PLANTED_EPOCHS = 15


@pytest.fixture(scope="session")
def planted_run(tmp_path_factory):
    """``(store, run_id)`` of the ``digits-planted`` preset trained for ``PLANTED_EPOCHS``. The
    store is shared by the whole session: tests add groupings to it but never change the run."""
    store = ArtifactStore(tmp_path_factory.mktemp("planted"))
    spec = spec_from_preset("digits-planted", train=TrainConfig(epochs=PLANTED_EPOCHS))
    return store, train_run(spec, store)


@pytest.fixture
def submitted(monkeypatch):
    """Record jobs.submit calls instead of starting worker processes."""
    calls = []

    def fake_submit(store, job, **kwargs):
        calls.append(job)
        return "running"

    monkeypatch.setattr(jobs, "submit", fake_submit)
    return calls


@pytest.fixture
def interrupted_run(tmp_path):
    """A store whose only run stopped after epoch 1 of 2: it cannot be evaluated or grouped yet."""
    store = ArtifactStore(tmp_path / "store")
    run_id = store.save_spec(spec_from_preset("digits-g2", subset=300, train=TrainConfig(epochs=2)))
    store.write_status(run_id, state="interrupted", epochs_done=1, epochs=2)
    return store


@pytest.fixture
def polling(monkeypatch):
    """Record how the pages poll: every ``st.fragment`` registered, as ``(function name,
    run_every)``, in ``.fragments``, and every ``st.rerun()`` call (not performed) in ``.reruns``."""
    import types

    import streamlit as st

    record = types.SimpleNamespace(fragments=[], reruns=[])
    real_fragment = st.fragment

    def recording_fragment(func=None, *, run_every=None):
        def wrap(f):
            record.fragments.append((f.__name__, run_every))
            return real_fragment(f, run_every=run_every)
        return wrap(func) if func is not None else wrap

    monkeypatch.setattr(st, "fragment", recording_fragment)
    monkeypatch.setattr(st, "rerun", lambda *args, **kwargs: record.reruns.append(args))
    return record
