"""Each experiment's default method is the one its committed comparison ranks best (on development data); a
method one test row away from the best counts as tied with it."""

import pandas as pd
import pytest

from hybridwbc.config import compose_experiment

PAIRS = {"all_hem": "all_hem_compare", "wbc5": "wbc5_compare", "pbc8": "pbc8_compare", "all_pbs": "all_pbs_compare"}


@pytest.mark.parametrize("experiment", sorted(PAIRS))
def test_default_method_is_the_best_of_the_committed_comparison(experiment, project_root):
    comparison = PAIRS[experiment]
    df = pd.read_csv(project_root / "experiments" / comparison / "results.csv")
    ranked = df[df["variant"] == "all"]  # the ranking metric: balanced accuracy on all test rows
    top = ranked["balanced_accuracy"].max()
    right = (ranked["accuracy"] * ranked["n_test_rows"]).round()  # test rows each method got right
    leader = right[ranked["balanced_accuracy"] == top].max()
    tied = (ranked["balanced_accuracy"] == top) | ((leader - right).abs() <= 1)  # one test row apart is a tie
    best = {m.split(" (")[0] for m in ranked.loc[tied, "method"]}
    methods = compose_experiment(comparison, [])["methods"]
    default = compose_experiment(experiment, []).classifier.name
    assert default in {methods[b].name for b in best}, (experiment, default, best)
    yaml = (project_root / "hybridwbc" / "conf" / "experiment" / f"{experiment}.yaml").read_text()
    assert f"# Default method: {default}" in yaml and f"experiments/{comparison}/results.md" in yaml  # the reason
