import os

import numpy as np
import pandas as pd
import pytest

from hybridwbc.data.manifest import MANIFEST_COLUMNS, manifest_hash, scan
from hybridwbc.errors import ConfigError, DataLayoutError

IMG = np.full((16, 16, 3), 120, np.uint8)


def test_folders_layout(folder_dataset):
    s = scan(folder_dataset, "folders")
    m = s.manifest
    assert list(m.columns) == MANIFEST_COLUMNS
    assert m["label"].value_counts().to_dict() == {"eosinophil": 12, "lymphocyte": 12}
    assert (m["sha256"].str.len() == 64).all()
    assert (m["subject"] == "").all()
    assert s.rejected.empty


def test_non_image_files_are_reported_not_taken(folder_dataset):
    (folder_dataset / "lymphocyte" / "notes.docx").write_text("x")
    s = scan(folder_dataset, "folders")
    assert len(s.manifest) == 24
    assert s.rejected["reason"].str.contains("not an image").sum() == 1


def test_pbc_fine_labels(save_png, tmp_path):
    save_png(tmp_path / "neutrophil" / "SNE_1.png", IMG)
    save_png(tmp_path / "neutrophil" / "BNE_2.png", IMG)
    save_png(tmp_path / "ig" / "MY_3.png", IMG)
    m = scan(tmp_path, "pbc").manifest
    assert sorted(m["fine_label"]) == ["BNE", "MY", "SNE"]


def test_cnmc_flat_nested_and_csv_layouts(save_png, tmp_path):
    flat = tmp_path / "flat"
    save_png(flat / "all" / "UID_11_1_1_all.png", IMG)
    save_png(flat / "all" / "UID_11_2_1_all.png", IMG)
    save_png(flat / "hem" / "UID_H3_1_1_hem.png", IMG)
    m = scan(flat, "cnmc").manifest
    assert sorted(m["subject"]) == ["11", "11", "H3"]
    assert m.set_index("subject")["label"].to_dict() == {"11": "all", "H3": "hem"}

    nested = tmp_path / "nested" / "C-NMC_training_data"
    save_png(nested / "fold_0" / "all" / "UID_5_1_1_all.png", IMG)
    save_png(nested / "fold_2" / "hem" / "UID_H9_1_2_hem.png", IMG)
    phase = tmp_path / "nested" / "C-NMC_test_prelim_phase_data"
    save_png(phase / "C-NMC_test_prelim_phase_data" / "1.png", IMG)
    save_png(phase / "C-NMC_test_prelim_phase_data" / "2.png", IMG)
    pd.DataFrame({"Patient_ID": ["UID_57_29_1_all.bmp", "UID_H49_35_1_hem.bmp"], "new_names": ["1.png", "2.png"],
                  "labels": [1, 0]}).to_csv(phase / "labels.csv", index=False)
    m = scan(tmp_path / "nested", "cnmc").manifest
    assert len(m) == 4
    got = dict(zip(m["path"].map(os.path.basename), zip(m["label"], m["subject"])))
    assert got["1.png"] == ("all", "57") and got["2.png"] == ("hem", "H49")
    assert got["UID_5_1_1_all.png"] == ("all", "5")


def test_cnmc_rejects_mislabelled_and_unnamed_files(save_png, tmp_path):
    save_png(tmp_path / "all" / "UID_11_1_1_all.png", IMG)
    save_png(tmp_path / "hem" / "UID_H3_1_1_hem.png", IMG)
    save_png(tmp_path / "hem" / "UID_4_1_1_all.png", IMG)  # says all, lies in hem
    save_png(tmp_path / "hem" / "cell.png", IMG)
    s = scan(tmp_path, "cnmc")
    assert len(s.manifest) == 2
    reasons = " ".join(s.rejected["reason"])
    assert "folder says 'hem'" in reasons and "without a subject id" in reasons


def test_bccd_layout(save_png, tmp_path):
    save_png(tmp_path / "JPEGImages" / "BloodImage_00000.png", IMG)
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "Annotations" / "BloodImage_00000.xml").write_text("<annotation/>")
    m = scan(tmp_path, "bccd", min_classes=1).manifest
    assert m["label"].tolist() == ["field"] and m["annotation"].iloc[0].endswith(".xml")
    with pytest.raises(DataLayoutError, match="No JPEGImages folder"):
        scan(tmp_path / "Annotations", "bccd", min_classes=1)


def test_csv_layout_rejects_paths_outside_its_folder(save_png, tmp_path):
    root = tmp_path / "ds"
    save_png(root / "a" / "1.png", IMG)
    save_png(root / "b" / "2.png", IMG)
    save_png(tmp_path / "outside.png", IMG)
    pd.DataFrame({"path": ["a/1.png", "b/2.png", "../outside.png", str(tmp_path / "outside.png"), "a/x.txt"],
                  "label": ["x", "y", "x", "y", "x"], "subject": ["s1", "s2", "", "", ""]}
                 ).to_csv(root / "manifest.csv", index=False)
    s = scan(root / "manifest.csv", "csv")
    assert s.manifest["subject"].tolist() == ["s1", "s2"]
    assert s.rejected["reason"].str.contains("outside").sum() == 2
    assert s.rejected["reason"].str.contains("not an image").sum() == 1


def test_csv_layout_errors(tmp_path):
    with pytest.raises(DataLayoutError, match="No CSV manifest"):
        scan(tmp_path, "csv")
    (tmp_path / "manifest.csv").write_text("file,klass\na.png,x\n")
    with pytest.raises(DataLayoutError, match=r"lacks column\(s\) \['label', 'path'\]"):
        scan(tmp_path, "csv")


def test_missing_root_names_path_layout_and_fix(tmp_path):
    with pytest.raises(DataLayoutError, match=r"does not exist\. Expected the 'folders' layout.*Fix: set data.root"):
        scan(tmp_path / "nowhere", "folders")
    f = tmp_path / "file.txt"
    f.write_text("x")
    with pytest.raises(DataLayoutError, match="is a file, not a folder"):
        scan(f, "folders")


def test_empty_root_and_single_class(save_png, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataLayoutError, match="No images found"):
        scan(tmp_path / "empty", "folders")
    save_png(tmp_path / "one" / "onlyclass" / "a.png", IMG)
    with pytest.raises(DataLayoutError, match="needs at least 2"):
        scan(tmp_path / "one", "folders")


def test_unknown_layout():
    with pytest.raises(ConfigError, match="Unknown data layout 'xml'"):
        scan(".", "xml")


def test_symlink_loop_is_reported_and_scan_terminates(folder_dataset):
    os.symlink(folder_dataset / "lymphocyte", folder_dataset / "lymphocyte" / "loop")
    s = scan(folder_dataset, "folders")
    assert len(s.manifest) == 24
    assert s.rejected["reason"].str.contains("symlink loop").any()


def test_manifest_hash_ignores_row_order(folder_dataset):
    m = scan(folder_dataset, "folders").manifest
    assert manifest_hash(m) == manifest_hash(m.iloc[::-1])
    assert manifest_hash(m) != manifest_hash(m.iloc[1:])


def test_load_dataset_selects_classes_and_caps(folder_dataset, tmp_path):
    from hybridwbc.data.dataset import load_dataset
    from hybridwbc.errors import DataLayoutError

    cfg = {"name": "f", "layout": "folders", "root": str(folder_dataset), "subdir": None, "classes": None,
           "max_per_class": 5, "min_classes": 2, "synthetic": {}}
    d = load_dataset(cfg, tmp_path, tmp_path / "cache", seed=0)
    assert d.source == "real" and d.manifest["label"].value_counts().to_dict() == {"eosinophil": 5, "lymphocyte": 5}
    assert load_dataset(cfg, tmp_path, tmp_path / "cache", seed=0).manifest.equals(d.manifest)
    with pytest.raises(DataLayoutError, match=r"data.classes names \['monocyte'\]"):
        load_dataset({**cfg, "classes": ["monocyte"]}, tmp_path, tmp_path / "cache")


def test_relabel_maps_classes_and_keeps_the_original_as_fine_label(folder_dataset, tmp_path):
    from hybridwbc.data.dataset import load_dataset
    from hybridwbc.errors import DataLayoutError

    cfg = {"name": "f", "layout": "folders", "root": str(folder_dataset), "subdir": None, "classes": None,
           "max_per_class": None, "relabel": {"lymphocyte": "other"}, "min_classes": 2, "synthetic": {}}
    m = load_dataset(cfg, tmp_path, tmp_path / "cache").manifest
    assert m["label"].value_counts().to_dict() == {"eosinophil": 12, "other": 12}
    assert set(m.loc[m["label"] == "other", "fine_label"]) == {"lymphocyte"}
    with pytest.raises(DataLayoutError, match=r"data.relabel maps \['basophil'\]"):
        load_dataset({**cfg, "relabel": {"basophil": "other"}}, tmp_path, tmp_path / "cache")
