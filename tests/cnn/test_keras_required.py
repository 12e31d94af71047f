"""Keras is a required dependency: a broken install must fail the CNN tests, not skip them.

(A file of its own: with Keras broken, ``test_cnn.py`` cannot even be imported.)
"""

from __future__ import annotations

import os
import subprocess
import sys


def test_a_broken_keras_fails_the_cnn_tests_instead_of_skipping_them(project_root, tmp_path):
    shadow = tmp_path / "broken" / "keras"
    shadow.mkdir(parents=True)
    # what a broken TensorFlow looks like from Keras (pytest.importorskip would turn it into a skip)
    (shadow / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'tensorflow.broken'\", "
                                        "name='tensorflow.broken')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(shadow.parent), str(project_root)]))
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                          str(project_root / "tests" / "cnn" / "test_cnn.py")],
                         capture_output=True, text=True, cwd=project_root, env=env, timeout=300)
    assert out.returncode == 2, out.stdout[-2000:]  # 2: a collection error (a skip would exit 0 or 5)
    assert "No module named 'tensorflow.broken'" in out.stdout and "skipped" not in out.stdout
