"""Importing and calling the library leaves the process as it was: stdout, signal handlers, warnings,
matplotlib's backend, environment variables, torch's global flags; MONAI is not imported by importing
the library or by a presegmentation-only run."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO, synthetic_spine

PROBE = r"""
import json, os, signal, sys, warnings
# the dependencies' own import-time effects (nnU-Net sets environment variables and warning filters) are theirs
import matplotlib, numpy, scipy.ndimage, scipy.special, SimpleITK, torch, tqdm  # noqa
import nnunetv2.inference.predict_from_raw_data, nnunetv2.utilities.get_network_from_plans  # noqa
import nnunetv2.utilities.label_handling.label_handling, nnunetv2.utilities.plans_handling.plans_handler  # noqa

def state():
    return {
        "stdout": id(sys.stdout), "stderr": id(sys.stderr),
        "signals": [repr(signal.getsignal(s)) for s in (signal.SIGINT, signal.SIGTERM)],
        "showwarning": repr(warnings.showwarning), "filters": len(warnings.filters),
        "backend": matplotlib.rcParams["backend"] if "matplotlib.pyplot" in sys.modules else "no pyplot",
        "environ": sorted(os.environ.items()), "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "threads": torch.get_num_threads(), "cwd": os.getcwd(),
    }

before = state()
import SpineSegDiffLib.apps.batch, SpineSegDiffLib.apps.cli  # noqa
import SpineSegDiffLib.outputs.writer, SpineSegDiffLib.inference.pipeline  # noqa
after_import = state()
from SpineSegDiffLib.apps.cli import main
unrefined = main(["segment", sys.argv[1], "-o", sys.argv[2] + "_unrefined", "--models", sys.argv[3], "--no-refine",
                  "--quiet"])
after_unrefined, monai_unrefined = state(), "monai" in sys.modules
pyplot_unrefined = "matplotlib.pyplot" in sys.modules
import monai  # noqa  refinement builds MONAI blocks: MONAI's import-time effects (pyplot included) are MONAI's
before_refined = state()
code = main(["segment", sys.argv[1], "-o", sys.argv[2], "--models", sys.argv[3], "--samples", "1", "--steps", "1",
             "--quiet"])
after_run = state()
print(json.dumps({"code": code, "unrefined": unrefined, "before": before, "after_import": after_import,
                  "after_unrefined": after_unrefined, "before_refined": before_refined, "after_run": after_run,
                  "monai_unrefined": monai_unrefined, "pyplot_unrefined": pyplot_unrefined}))
"""


def test_no_process_wide_side_effects_from_import_or_a_run(tmp_path, tiny_models):
    import SimpleITK as sitk

    source = tmp_path / "case.mha"
    sitk.WriteImage(synthetic_spine(), str(source))
    run = subprocess.run([sys.executable, "-c", PROBE, str(source), str(tmp_path / "out"), str(tiny_models)],
                         capture_output=True, text=True, env={"PYTHONPATH": str(REPO / "SpineSegDiff"),
                                                              "PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["code"] == 0 and result["unrefined"] == 0
    assert result["after_import"] == result["before"]
    assert result["after_unrefined"] == result["before"]
    assert result["after_run"] == result["before_refined"]
    assert not result["monai_unrefined"], "import and presegmentation only do not import MONAI (slow, global)"
    assert not result["pyplot_unrefined"], "the preview does not go through pyplot's global state"
    assert (tmp_path / "out_unrefined" / "case_preview.png").is_file()
    assert (tmp_path / "out" / "case_preview.png").is_file()
