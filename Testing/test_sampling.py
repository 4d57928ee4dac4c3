import pytest
import torch

from SpineSegDiffLib.inference.networks import NetworkConfig, SpineSegDiffNet
from SpineSegDiffLib.inference.sampling import (
    SCHEDULES,
    SamplingOptions,
    ddim_step,
    make_scheduler,
    refine,
    timestep_pairs,
)


def test_timestep_pairs_run_from_t_start_to_clean():
    pairs = timestep_pairs(30, 10)
    assert len(pairs) == 10
    assert pairs[0][0] == 30 and pairs[-1] == (0, -1)
    ts = [t for t, _ in pairs]
    assert all(a > b for a, b in zip(ts, ts[1:]))
    assert all(prev == nxt for (_, prev), (nxt, _) in zip(pairs, pairs[1:]))


def test_too_many_steps_are_refused():
    with pytest.raises(ValueError):
        timestep_pairs(5, 7)


def test_ddim_step_matches_monai_where_monai_is_consistent():
    scheduler = make_scheduler(50)
    scheduler.set_timesteps(10)  # divides T: MONAI steps by 5
    torch.manual_seed(0)
    x_t, x0 = torch.randn(2, 4, 8, 8), torch.rand(2, 4, 8, 8) * 2 - 1
    for t in (45, 20, 5):
        expected, _ = scheduler.step(x0, t, x_t)
        assert torch.allclose(ddim_step(scheduler.alphas_cumprod.tolist(), x0, x_t, t, t - 5), expected, atol=1e-5)


def test_last_step_returns_the_prediction():
    scheduler = make_scheduler(50)
    x0, alphas = torch.rand(1, 4, 4, 4), scheduler.alphas_cumprod.tolist()
    assert torch.allclose(ddim_step(alphas, x0, torch.randn(1, 4, 4, 4), 0, -1), x0, atol=1e-6)


def _tiny_refine(seed: int, sample_batch: int = 2):
    torch.manual_seed(0)
    net = SpineSegDiffNet(NetworkConfig(features=(4, 4, 8, 8, 16, 4))).eval()
    image = torch.rand(1, 1, 32, 32)
    preseg = torch.zeros(1, 4, 32, 32)
    preseg[:, 0] = 1
    options = SamplingOptions(samples=3, steps=3, fused_steps=2, t_start=6, seed=seed, sample_batch=sample_batch)
    return refine(net, make_scheduler(10), image, preseg, options)


def test_same_seed_same_result_and_batching_does_not_matter():
    a, b, c = _tiny_refine(1), _tiny_refine(1), _tiny_refine(1, sample_batch=3)
    for x, y, z in zip(a, b, c):
        assert torch.equal(x, y)
        assert torch.allclose(x, z, atol=1e-5)
    different = _tiny_refine(2)
    assert not torch.equal(a[0], different[0])


def test_refine_shapes_and_ranges():
    probabilities, uncertainty, class_uncertainty = _tiny_refine(0)
    assert probabilities.shape == (1, 4, 32, 32) and uncertainty.shape == (1, 32, 32)
    assert class_uncertainty.shape == (1, 4, 32, 32)
    assert torch.allclose(probabilities.sum(1), torch.ones(1, 32, 32), atol=1e-5)
    assert uncertainty.min() >= 0 and uncertainty.max() <= 1 + 1e-6


def test_images_refined_together_match_each_refined_alone():
    """Several images per call (slices on a GPU): the first image's chains draw the same noise as when
    it is refined alone, so its result must not change; each image's chains see only their own image."""
    torch.manual_seed(0)
    net = SpineSegDiffNet(NetworkConfig(features=(4, 4, 8, 8, 16, 4))).eval()
    images = torch.rand(3, 1, 32, 32)
    presegs = torch.nn.functional.one_hot(torch.randint(0, 4, (3, 32, 32)), 4).permute(0, 3, 1, 2).float()
    options = SamplingOptions(samples=2, steps=2, fused_steps=2, t_start=6, sample_batch=4)
    together = refine(net, make_scheduler(10), images, presegs, options)
    alone = refine(net, make_scheduler(10), images[:1], presegs[:1], options)
    assert together[0].shape == (3, 4, 32, 32) and together[1].shape == (3, 32, 32)
    for batched, single in zip(together, alone):
        assert torch.allclose(batched[:1], single, atol=1e-5)
    swapped = refine(net, make_scheduler(10), images.flip(0), presegs, options)
    assert not torch.allclose(swapped[0][0], together[0][0], atol=1e-3)


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_each_config_schedule_is_a_monai_x0_ddim_scheduler(schedule):
    from monai.networks.schedulers import DDIMScheduler

    scheduler = make_scheduler(30, schedule)
    assert isinstance(scheduler, DDIMScheduler) and scheduler.prediction_type == "sample"
    alphas = scheduler.alphas_cumprod
    assert alphas.shape == (30,) and bool((alphas[1:] < alphas[:-1]).all())
    others = [make_scheduler(30, other).alphas_cumprod for other in SCHEDULES if other != schedule]
    assert not any(torch.allclose(alphas, other) for other in others)


def test_unknown_schedule_is_refused():
    with pytest.raises(ValueError, match="unknown noise schedule"):
        make_scheduler(30, "sigmoid")
