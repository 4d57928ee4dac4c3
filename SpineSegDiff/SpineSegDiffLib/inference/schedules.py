"""The noise schedules the sampler can build (MONAI's ``DDIMScheduler`` names).

A module of its own, importing nothing, so that reading a model's settings (:mod:`..modelset.settings`) needs
neither PyTorch nor SimpleITK, and the sampler (:mod:`.sampling`) needs no SimpleITK."""

SCHEDULES = ("cosine", "linear_beta", "scaled_linear_beta")
