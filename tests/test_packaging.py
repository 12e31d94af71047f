"""The package ships its configs: ``pip install .`` (not editable) must find them from any folder."""

import subprocess
import sys
import zipfile

import pytest


@pytest.mark.slow
def test_the_wheel_holds_every_config(project_root, conf_dir, tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp_path), str(project_root)], check=True, capture_output=True, timeout=600)
    (wheel,) = tmp_path.glob("hybridwbc-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"hybridwbc/conf/{p.relative_to(conf_dir).as_posix()}" for p in conf_dir.rglob("*.yaml")}
    assert "hybridwbc/conf/config.yaml" in expected and "hybridwbc/conf/experiment/all_hem.yaml" in expected
    assert expected <= names, sorted(expected - names)[:5]
