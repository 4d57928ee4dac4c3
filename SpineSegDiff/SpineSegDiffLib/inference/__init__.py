"""From image to labels and uncertainty: model space (``preprocess``), nnU-Net presegmentation
(``presegment``), the dual-encoder networks, DDIM sampling, fusion and entropy, the 2D and 3D refiners,
post-processing, and the pipeline that composes them."""
