import subprocess
import sys

import pytest

from hybridwbc.data.check import check_root, format_report
from hybridwbc.errors import DataLayoutError


def test_check_reports_classes_and_skipped(folder_dataset):
    (folder_dataset / "lymphocyte" / "broken.png").write_bytes(b"junk")
    report = check_root(folder_dataset, read_images=True)
    (entry,) = report.values()
    assert entry["counts"] == {"eosinophil": 12, "lymphocyte": 13}
    text = format_report(report)
    assert "skipped: 1" in text and "broken.png" in text


def test_check_root_with_named_data_sets(tmp_path, folder_dataset):
    import shutil

    shutil.copytree(folder_dataset, tmp_path / "root" / "pbc")
    (tmp_path / "root" / "cnmc").mkdir()
    report = check_root(tmp_path / "root")
    assert report["pbc"]["layout"] == "pbc" and "error" in report["cnmc"]
    assert "cnmc (cnmc): ERROR No images found" in format_report(report)


def test_check_cli(project_root, tmp_path, folder_dataset):
    ok = subprocess.run([sys.executable, "-m", "hybridwbc.data", "check", str(folder_dataset)],
                        capture_output=True, text=True, cwd=project_root, timeout=120)
    assert ok.returncode == 0 and "eosinophil" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "hybridwbc.data", "check", str(tmp_path / "nope")],
                         capture_output=True, text=True, cwd=project_root, timeout=120)
    assert bad.returncode == 1 and bad.stderr.startswith("hybridwbc: error:")
    with pytest.raises(DataLayoutError, match="does not exist"):
        check_root(tmp_path / "nope")
