"""``hybridwbc <command>``: one entry point that dispatches to each command's module, lazily."""

import sys
import types

import pytest

from hybridwbc.__main__ import COMMANDS, main


def test_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in ("run", "predict", "analyze", "tables", "check", "report"):
        assert f"\n  {name} " in out
    assert main([]) == 2 and "usage: hybridwbc <command>" in capsys.readouterr().out


def test_unknown_command_is_one_error_line(capsys):
    assert main(["tabels"]) == 1
    assert "unknown command 'tabels'; the commands are run, predict" in capsys.readouterr().err


def test_a_missing_command_module_says_how_to_get_it(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "hybridwbc.analyze", None)  # importing it now fails as if it were absent
    assert main(["analyze", "x"]) == 1
    assert "`hybridwbc analyze` needs the module hybridwbc.analyze" in capsys.readouterr().err


def _fake(monkeypatch, name, seen):
    module = types.ModuleType(name)
    module.main = lambda argv=None: seen.append(list(sys.argv[1:]) if argv is None else argv) or 0
    monkeypatch.setitem(sys.modules, name, module)


def test_arguments_reach_the_command(monkeypatch):
    seen = []
    _fake(monkeypatch, "hybridwbc.analyze", seen)
    _fake(monkeypatch, "hybridwbc.run", seen)
    assert main(["analyze", "all_hem", "--uri", "sqlite:///m.db"]) == 0
    monkeypatch.setattr(sys, "argv", ["hybridwbc"])
    assert main(["run", "+experiment=wbc5", "seed=1"]) == 0  # Hydra reads sys.argv
    assert seen == [["all_hem", "--uri", "sqlite:///m.db"], ["+experiment=wbc5", "seed=1"]]


def test_check_runs_the_data_check(folder_dataset, capsys):
    assert COMMANDS["check"][2] == ("check",)
    assert main(["check", str(folder_dataset)]) == 0
    out = capsys.readouterr().out
    assert "lymphocyte" in out and "12" in out


def test_report_errors_come_back_as_the_status(tmp_path, capsys):
    assert main(["report", "--run", "f" * 32, "--uri", f"sqlite:///{tmp_path}/m.db", "--out", str(tmp_path)]) == 1
    assert "No run 'fff" in capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_module_but_analyze_exists(name):
    import importlib.util

    if name != "analyze":  # written in another branch; dispatched lazily, with an error line while absent
        assert importlib.util.find_spec(COMMANDS[name][0]) is not None
