"""Tiny, untrained model folders for tests: the real formats and the real loading code, in seconds.

They produce meaningless labels; tests that need real behaviour use the bundled models instead.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from SpineSegDiffLib.inference.networks import NetworkConfig, SpineSegDiffNet
from SpineSegDiffLib.labels import STRUCTURES
from SpineSegDiffLib.modelset.folder import DEFAULT_DIFFUSION, DEFAULT_DIFFUSION_3D, DEFAULT_PRESEGMENTER, write_config

TINY_FEATURES = (4, 4, 8, 8, 16, 4)


def _tiny_plans() -> dict:
    conv = [[3, 3]] * 3
    return {
        "dataset_name": "Dataset999_Tiny", "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": [1.0, 1.0, 1.0], "original_median_shape_after_transp": [1, 64, 64],
        "image_reader_writer": "SimpleITKIO", "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2],
        "experiment_planner_used": "ExperimentPlanner", "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {"0": {
            "max": 255.0, "mean": 100.0, "median": 90.0, "min": 0.0, "percentile_00_5": 5.0,
            "percentile_99_5": 255.0, "std": 60.0}},
        "configurations": {"2d": {
            "data_identifier": "nnUNetPlans_2d", "preprocessor_name": "DefaultPreprocessor", "batch_size": 2,
            "patch_size": [64, 64], "median_image_size_in_voxels": [64.0, 64.0], "spacing": [1.0, 1.0],
            "normalization_schemes": ["ZScoreNormalization"], "use_mask_for_norm": [False],
            "resampling_fn_data": "resample_data_or_seg_to_shape", "resampling_fn_seg": "resample_data_or_seg_to_shape",
            "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
            "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
            "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
            "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0, "force_separate_z": None},
            "batch_dice": True,
            "architecture": {
                "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
                "arch_kwargs": {
                    "n_stages": 3, "features_per_stage": [4, 8, 16], "conv_op": "torch.nn.modules.conv.Conv2d",
                    "kernel_sizes": conv, "strides": [[1, 1], [2, 2], [2, 2]], "n_conv_per_stage": [2, 2, 2],
                    "n_conv_per_stage_decoder": [2, 2], "conv_bias": True,
                    "norm_op": "torch.nn.modules.instancenorm.InstanceNorm2d",
                    "norm_op_kwargs": {"eps": 1e-05, "affine": True}, "dropout_op": None, "dropout_op_kwargs": None,
                    "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True}},
                "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]}}},
    }


def make_tiny_nnunet(folder: Path, seed: int = 0) -> Path:
    """An nnU-Net v2 model folder (plans, dataset.json, weight-only fold_0 checkpoint)."""
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    folder.mkdir(parents=True, exist_ok=True)
    plans = _tiny_plans()
    dataset = {"channel_names": {"0": "T2"}, "labels": {"background": 0, **{s.key: s.value for s in STRUCTURES}},
               "numTraining": 1, "file_ending": ".nii.gz"}
    (folder / "plans.json").write_text(json.dumps(plans))
    (folder / "dataset.json").write_text(json.dumps(dataset))
    arch = plans["configurations"]["2d"]["architecture"]
    torch.manual_seed(seed)
    network = get_network_from_plans(arch["network_class_name"], arch["arch_kwargs"], arch["_kw_requires_import"],
                                     1, 4, allow_init=True, deep_supervision=False)
    (folder / "fold_0").mkdir(exist_ok=True)
    torch.save({"network_weights": network.state_dict(), "trainer_name": "nnUNetTrainerSpineSmoke",
                "configuration": "2d", "inference_allowed_mirroring_axes": None}, folder / "fold_0" / "checkpoint.pth")
    config = {"kind": "nnunet", "id": "tiny-nnunet", "configuration": "2d", "folds": [0],
              "checkpoint": "checkpoint.pth"}
    write_config(folder, config, ["dataset.json", "plans.json", "fold_0/checkpoint.pth"])
    return folder


TINY_ROI_3D = (16, 160, 96)


def make_tiny_diffusion(folder: Path, seed: int = 0, num_train_timesteps: int = 10, t_start: int = 6,
                        spatial_dims: int = 2) -> Path:
    """A diffusion model folder with a tiny random dual-encoder network (2D, or 3D with 16x160x96 windows)."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    network = NetworkConfig(spatial_dims=spatial_dims, features=TINY_FEATURES)
    torch.save(SpineSegDiffNet(network).state_dict(), folder / "weights.pt")
    config = {"kind": "diffusion", "id": f"tiny-diffusion-{spatial_dims}d",
              "network": {"spatial_dims": spatial_dims, "num_classes": 4, "features": list(TINY_FEATURES),
                          "image_channels": 1},
              "diffusion": {"num_train_timesteps": num_train_timesteps, "schedule": "cosine", "prediction": "x0",
                            "t_start": t_start}}
    if spatial_dims == 3:
        config["inference"] = {"roi_size": list(TINY_ROI_3D), "overlap": 0.25}
    write_config(folder, config, ["weights.pt"])
    return folder


def make_tiny_models(root: Path) -> Path:
    """``root`` holding the three default-named tiny model folders; pass it as ``models_dir``."""
    make_tiny_nnunet(root / DEFAULT_PRESEGMENTER)
    make_tiny_diffusion(root / DEFAULT_DIFFUSION)
    make_tiny_diffusion(root / DEFAULT_DIFFUSION_3D, spatial_dims=3)
    return root
