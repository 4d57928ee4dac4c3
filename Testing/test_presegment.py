"""The nnU-Net predictor is set up like nnU-Net's own constructor would, without its print or global flag."""

from __future__ import annotations

import torch

from SpineSegDiffLib.inference.presegment import make_predictor


def test_quiet_predictor_has_every_attribute_of_nnunets_constructor(capsys):
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    theirs = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=False,
                             perform_everything_on_device=False, device=torch.device("cpu"), verbose=False,
                             verbose_preprocessing=False, allow_tqdm=False)
    capsys.readouterr()
    ours = make_predictor(torch.device("cpu"))
    assert capsys.readouterr().out == "", "nothing printed"
    assert vars(ours) == vars(theirs)
    assert isinstance(ours, nnUNetPredictor)
