"""The one key=value parser behind predict, analyze, verify, compose and the Spark scorer."""

import pytest

from hybridwbc.cli import parse_key_values
from hybridwbc.errors import ConfigError

KEYS = {"model", "input", "output", "n_jobs"}
REQUIRED = {"model", "input", "output"}
USAGE = "usage: tool model=<dir> input=<folder> output=<csv> [n_jobs=-1]"


def test_arguments_become_a_dict_of_strings_and_a_value_may_hold_equals_signs():
    args = parse_key_values(["model=m", "input=a=b.csv", "output=o.csv"], KEYS, REQUIRED, USAGE)
    assert args == {"model": "m", "input": "a=b.csv", "output": "o.csv"}


@pytest.mark.parametrize("argv, message", [
    (["model"], r"Argument 'model' is not key=value \(keys: \['input', 'model', 'n_jobs', 'output'\]\)"),
    (["modle=m"], r"Unknown argument 'modle': it is not one of \['input', 'model', 'n_jobs', 'output'\]"),
    (["model=m", "input=i"], r"Missing argument\(s\) \['output'\]\. usage: tool"),
])
def test_each_bad_argument_is_one_error_naming_it_and_the_usage(argv, message):
    with pytest.raises(ConfigError, match=message):
        parse_key_values(argv, KEYS, REQUIRED, USAGE)


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help_prints_the_documentation_and_exits_zero(flag, capsys):
    with pytest.raises(SystemExit, match="0"):
        parse_key_values(["model=m", flag], KEYS, REQUIRED, USAGE, "The tool's page.")
    assert capsys.readouterr().out == "The tool's page.\n"
