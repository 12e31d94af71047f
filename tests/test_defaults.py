"""Each experiment's default method is the one its committed comparison ranks best (on development data)."""

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
    best = {m.split(" (")[0] for m in ranked.loc[ranked["balanced_accuracy"] == top, "method"]}  # ties: any of them
    methods = compose_experiment(comparison, [])["methods"]
    default = compose_experiment(experiment, []).classifier.name
    assert default in {methods[b].name for b in best}, (experiment, default, best)
    yaml = (project_root / "hybridwbc" / "conf" / "experiment" / f"{experiment}.yaml").read_text()
    assert f"# Default method: {default}" in yaml and f"experiments/{comparison}/results.md" in yaml  # the reason
