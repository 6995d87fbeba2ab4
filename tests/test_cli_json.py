"""``group --json`` and ``--param`` as other tools call them: the parameters a method declares
are the ones printed and stored, and a bad one is a one-line error."""

import json

import pytest

from stg_core.grouping import GroupingSpec, default_params, grouping_dir, load_grouping_spec
from stg_core.store import ArtifactStore
from tests.test_cli import TRAIN, cli


@pytest.fixture(scope="module")
def g2_run(tmp_path_factory):
    store = tmp_path_factory.mktemp("cli_json")
    out = cli(*TRAIN, "--epochs", "2", store=store).stdout
    return store, out.strip().splitlines()[-1].removeprefix("run: ")


@pytest.mark.slow  # command-line subprocesses
def test_group_json_prints_and_stores_the_declared_parameters(g2_run):
    store, run_id = g2_run
    out = json.loads(cli("group", run_id, "--method", "stg", "--k", "3", "--param", "fuzziness=3", "--param",
                         "epochs=[2]", "--json", "-q", store=store).stdout)
    assert list(out["params"]) == list(default_params("stg"))  # every parameter, in declaration order
    assert out["params"] == {**default_params("stg"), "fuzziness": 3, "epochs": [2]}
    spec = load_grouping_spec(ArtifactStore(store), run_id, out["grouping_id"])
    assert spec.to_json()["params"] == out["params"] and spec.grouping_id() == out["grouping_id"]
    assert json.loads((grouping_dir(ArtifactStore(store), run_id, out["grouping_id"]) / "spec.json").read_text()) \
        == GroupingSpec(run_id, "stg", 3, params={"fuzziness": 3, "epochs": [2]}).to_json()
    clustered = json.loads(cli("cluster", run_id, "--k", "3", "--fuzziness", "3", "--epochs", "2", "--json",
                               store=store).stdout)
    assert out["memberships"] == clustered["memberships"] and out["labels"] == clustered["labels"]


@pytest.mark.slow  # a command-line subprocess per case
@pytest.mark.parametrize("method, param, message", [
    ("tag", "nope=1", "unknown parameter 'nope' for method 'tag'; parameters: affinity_every,"),
    ("stg", "fuzziness=1", "fuzziness F=1 must be a finite number greater than 1"),
    ("dmtg", "tau=0", "tau=0 must be a positive finite number"),
    ("grad-tae", "subset_size=99", "subset_size=99 must be an integer between 2 and"),
])
def test_a_bad_param_is_a_one_line_error(g2_run, method, param, message):
    store, run_id = g2_run
    bad = cli("group", run_id, "--method", method, "--k", "2", "--param", param, "--json", "-q", store=store,
              check=False)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.startswith("error: ") and message in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.stderr
