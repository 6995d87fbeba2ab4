"""Each grouping method's parameters, declared once as a dataclass: defaults, unknown names,
one-line errors that name the field, and stored specs that read back to the same ids."""

import hashlib
import json

import numpy as np
import pytest

from stg_core import config
from stg_core.clustering import TaskClusterer
from stg_core.grouping import (GROUPING_METHODS, GROUPING_VERSION, GroupingSpec, MethodParams, default_params,
                               params_class)
from stg_core.grouping.dmtg import DMTGParams
from stg_core.grouping.grad_tae import GradTAEParams
from stg_core.grouping.stg import STGParams
from stg_core.grouping.tag import TAGParams

#: ``params`` as stores written before the dataclasses hold them (every name, in this order).
STORED = {
    "stg": {"fuzziness": 3, "representation": "raw", "scaling": "none", "epochs": [2]},
    "tag": {"affinity_every": 10, "lookahead_lr": None, "epochs": 1, "exhaustive_max_tasks": 12, "beam_width": 64,
            "task_chunk": 16},
    "grad-tae": {"max_samples": 100, "validation_fraction": 0.3, "projection_dim": 200, "n_subsets": 20,
                 "subset_size": None, "C": 0.01, "offset": True, "clustering": "spectral", "solver": "CLARABEL"},
    "dmtg": {"tau": 2.5, "alpha_lr": None, "epochs": 1, "start_groups": None, "start_lead": 1.0,
             "weights_from": "trained", "hard": True, "branch_units": None},
    "random": {},
}


@pytest.mark.parametrize("method", list(GROUPING_METHODS))
def test_a_stored_spec_reads_back_to_the_same_json_and_id(method):
    stored = {"run_id": "9ab4baab0770", "method": method, "n_clusters": 2, "seed": 0, "params": STORED[method]}
    spec = GroupingSpec.from_json(json.loads(json.dumps(stored)))
    assert json.dumps(spec.to_json()) == json.dumps(stored)  # same keys, values and order
    text = json.dumps({**stored, "version": GROUPING_VERSION, "training_version": config.TRAINING_VERSION},
                      sort_keys=True, separators=(",", ":"))
    assert spec.grouping_id() == hashlib.sha256(text.encode()).hexdigest()[:12]
    assert list(default_params(method)) == list(STORED[method])  # the declaration order is the stored order


@pytest.mark.parametrize("method", list(GROUPING_METHODS))
def test_unknown_names_are_refused_with_the_known_ones(method):
    cls = params_class(method)
    assert issubclass(cls, MethodParams) and cls.method == method
    with pytest.raises(ValueError, match=f"unknown parameter 'nope' for method '{method}'") as info:
        cls.from_dict({"nope": 1})
    assert "\n" not in str(info.value)
    assert ", ".join(sorted(default_params(method))) in str(info.value)
    with pytest.raises(ValueError, match="unknown parameter 'nope'"):
        GroupingSpec("run", method, 2, params={"nope": 1})


def test_partial_dicts_take_the_declared_defaults_and_keep_their_values():
    params = STGParams.from_dict({"fuzziness": 3})
    assert params == STGParams(fuzziness=3) and params.to_dict()["representation"] == STGParams.representation
    assert type(params.fuzziness) is int  # kept as given: the stored JSON and the id stay the same
    assert GroupingSpec("run", "stg", 2, params=params).params is params
    with pytest.raises(ValueError, match="STGParams are not the parameters of method 'tag'"):
        GroupingSpec("run", "tag", 2, params=params)


@pytest.mark.parametrize("params, field", [
    (STGParams(representation="pca"), "representation"), (STGParams(scaling="minmax"), "scaling"),
    (STGParams(epochs=[]), "epochs"), (TAGParams(beam_width=0), "beam_width"),
    (TAGParams(exhaustive_max_tasks=15), "exhaustive_max_tasks"), (TAGParams(task_chunk=2.0), "task_chunk"),
    (TAGParams(lookahead_lr=0), "lookahead_lr"), (GradTAEParams(projection_dim=True), "projection_dim"),
    (GradTAEParams(n_subsets=0), "n_subsets"), (GradTAEParams(validation_fraction=np.nan), "validation_fraction"),
    (DMTGParams(start_groups=[0, 1, 2]), "start_groups"), (DMTGParams(start_lead=-0.5), "start_lead"),
])
def test_validate_names_the_field_in_one_line(params, field):
    with pytest.raises(ValueError, match=field) as info:
        params.validate(3, 2)
    assert "\n" not in str(info.value)


def test_k_and_fuzziness_have_one_check_and_one_message():
    x = np.random.default_rng(0).random((5, 4))
    with pytest.raises(ValueError, match=r"^k=6 must be between 2 and the number of tasks \(5\)$"):
        GroupingSpec("run", "stg", 6).validate(5)
    with pytest.raises(ValueError, match=r"^n_clusters=6 must be between 2 and the number of tasks \(5\)$"):
        TaskClusterer(6).fit(x)
    with pytest.raises(ValueError, match=r"^fuzziness F=1 must be a finite number greater than 1$"):
        GroupingSpec("run", "stg", 2, params={"fuzziness": 1}).validate(5)
    with pytest.raises(ValueError, match=r"^fuzziness F=1 must be a finite number greater than 1$"):
        TaskClusterer(2, fuzziness=1).fit(x)
