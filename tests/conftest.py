"""Shared fixtures: config composition, synthetic images and data sets, project paths, real-data skipping.

Tests live in one folder per wing of the package (``tests/<wing>/``) and are collected with
``--import-mode=importlib``, so same-named files in different folders do not clash; nothing
imports this module: its fixtures are requested by name. A test marked ``each_experiment`` is
run once per experiment config, with the experiment's name as its ``name`` argument
(``each_experiment(slow_suffix="_compare")`` also marks the matching ones ``slow``).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "hybridwbc" / "conf"
REAL_DATA = Path(os.environ.get("HYBRIDWBC_DATA", ROOT.parent / "shared" / "data"))
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


def pytest_generate_tests(metafunc):
    marker = metafunc.definition.get_closest_marker("each_experiment")
    if marker:  # each_experiment(slow_suffix="_compare"): those runs are also marked slow
        suffix = marker.kwargs.get("slow_suffix")
        exclude = set(marker.kwargs.get("exclude", ()))
        metafunc.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if suffix and n.endswith(suffix) else n
                                      for n in EXPERIMENTS if n not in exclude])


def pytest_collection_modifyitems(config, items):
    if not REAL_DATA.is_dir():
        skip = pytest.mark.skip(reason=f"real data folder {REAL_DATA} is absent")
        for item in items:
            if "realdata" in item.keywords:
                item.add_marker(skip)


@pytest.fixture
def compose(tmp_path):
    """Compose ``conf/config.yaml`` with overrides, rooted in a temporary project folder.

    Returns ``(cfg, choices)``; tracking goes to a sqlite store inside ``tmp_path``.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    from hybridwbc.config import register_schemas

    register_schemas()

    def _compose(*overrides: str):
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = hydra_compose("config", overrides=[f"paths.root={tmp_path}", "progress=false", *overrides],
                                return_hydra_config=True)
        choices = OmegaConf.to_container(cfg.hydra.runtime.choices)
        with __import__("omegaconf").open_dict(cfg):
            del cfg["hydra"]
        return cfg, choices

    return _compose


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def cell_image(rng):
    """One synthetic neutrophil-like cell, (96, 96, 3) uint8."""
    from hybridwbc.data.synthetic import PROFILES, draw_cell

    return draw_cell(rng, PROFILES["lymphocyte"], size=96).image


def _save_png(path: Path, array: np.ndarray) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


@pytest.fixture(scope="session")
def save_png():
    """``save_png(path, array) -> path``: write an RGB ``uint8`` array as a PNG (parent folders created)."""
    return _save_png


@pytest.fixture(scope="session")
def project_root() -> Path:
    """The project's root folder (holding ``conf/`` and ``hybridwbc/``)."""
    return ROOT


@pytest.fixture(scope="session")
def conf_dir() -> Path:
    """The Hydra config folder ``conf/``."""
    return CONF


@pytest.fixture(scope="session")
def real_data() -> Path:
    """The real development data (``HYBRIDWBC_DATA``, else ``../shared/data``); ``realdata`` tests skip without it."""
    return REAL_DATA


@pytest.fixture(scope="session")
def experiments() -> list:
    """Names of the experiment configs (``conf/experiment/*.yaml``)."""
    return list(EXPERIMENTS)


@pytest.fixture
def folder_dataset(tmp_path):
    """A small ``root/<class>/<image>.png`` data set of two synthetic classes (12 images each)."""
    from hybridwbc.data.synthetic import PROFILES, draw_cell

    root = tmp_path / "folders"
    rng = np.random.default_rng(1)
    for label in ("lymphocyte", "eosinophil"):
        for i in range(12):
            _save_png(root / label / f"{label}_{i:02d}.png", draw_cell(rng, PROFILES[label], size=64).image)
    return root


CHROMIUM = os.environ.get("HYBRIDWBC_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("HYBRIDWBC_CHROMEDRIVER", "/usr/bin/chromedriver")


@pytest.fixture
def browser(tmp_path):
    """A headless Chromium driven by Selenium (Debian's chromium + chromium-driver; `.ci/run` installs them).

    Skips with the reason when either binary is missing. The window is 1400x1000 so screenshots read.
    """
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).is_file()]
    if missing:
        pytest.skip(f"headless browser test needs {', '.join(missing)} (apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[dev]')")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,1000", f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(arg)
    prefs = {"download.default_directory": str(tmp_path / "downloads"), "download.prompt_for_download": False}
    options.add_experimental_option("prefs", prefs)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    driver.download_dir = tmp_path / "downloads"
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def child_process():
    """Start a child process with its three streams piped (``subprocess.Popen`` arguments otherwise); when the
    test ends, whatever it did, each child still running is killed and waited for, and its pipes are closed."""
    procs: list[subprocess.Popen] = []

    def start(args, **kwargs) -> subprocess.Popen:
        proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                **kwargs)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            stream.close()
