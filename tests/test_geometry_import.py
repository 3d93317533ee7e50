"""`import giqa.geometry` stays light: no torch, no transformers, and Numba only on first use."""

from __future__ import annotations

import subprocess
import sys


def _run(code: str) -> str:
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


def test_import_is_light():
    out = _run(
        "import sys, giqa.geometry\n"
        "from giqa.types import Box\n"
        "assert Box.from_grid(35, 319).to_grid() == (35, 319)\n"  # scalar codec path: no kernels
        "print(sorted(m for m in ('torch', 'transformers', 'numba') if m in sys.modules))"
    )
    assert out == "[]"


def test_kernels_load_on_first_use_without_heavy_imports():
    out = _run(
        "import sys, numpy as np, giqa.geometry as g\n"
        "g.pairwise_iou(np.zeros((1, 4)), np.zeros((1, 4)))\n"
        "g.box_merge(np.zeros((2, 4)))\n"
        "print('numba' in sys.modules, 'torch' in sys.modules, 'transformers' in sys.modules)"
    )
    assert out == "True False False"


def test_kernel_files_name_the_checks_version_they_compile():
    # Numba re-validates a kernel cache by its own file's text: a kernel file that compiles
    # _checks.first_bad must change whenever _checks does, or stale caches keep the old check.
    import re
    from pathlib import Path

    import giqa.geometry as g

    here = Path(g.__file__).parent
    version = re.search(r"^CHECKS_VERSION = (\d+)$", (here / "_checks.py").read_text(), re.M).group(1)
    users = [p for p in here.glob("_*kernels.py") if "giqa.geometry._checks import" in p.read_text()]
    assert users
    for path in users:
        assert f"CHECKS_VERSION = {version} " in path.read_text(), path.name
