import math

import pytest
import torch

from SpineSegDiffLib.inference.fusion import (
    StepFusion,
    binary_entropy,
    fusion_weights,
    normalised_entropy,
    sample_mean_probabilities,
)


def test_weights_follow_the_paper():
    w = fusion_weights(10)
    assert w[-1] == 1.0
    assert torch.all(w[1:] > w[:-1])
    assert w[0].item() == pytest.approx(math.exp(-5 * 9 / 10))


def test_entropy_bounds():
    uniform = torch.full((4, 3, 3), 0.25)
    certain = torch.zeros(4, 3, 3)
    certain[2] = 1
    assert torch.allclose(normalised_entropy(uniform), torch.ones(3, 3))
    assert torch.allclose(normalised_entropy(certain), torch.zeros(3, 3), atol=1e-6)
    assert torch.allclose(binary_entropy(torch.full((4, 2, 2), 0.5)), torch.ones(4, 2, 2))
    random = torch.softmax(torch.randn(4, 8, 8), 0)
    assert normalised_entropy(random).min() >= 0 and normalised_entropy(random).max() <= 1 + 1e-6


def test_sample_mean_is_a_distribution():
    p = sample_mean_probabilities(torch.randn(5, 4, 6, 6))
    assert p.shape == (4, 6, 6)
    assert torch.allclose(p.sum(0), torch.ones(6, 6))


def test_only_the_last_steps_count():
    torch.manual_seed(0)
    late = [torch.randn(3, 4, 5, 5) for _ in range(3)]
    results = []
    for early_scale in (1.0, 100.0):
        fusion = StepFusion(total_steps=5, num_fused_steps=3)
        for _ in range(2):
            fusion.add(early_scale * torch.randn(3, 4, 5, 5))
        for logits in late:
            fusion.add(logits)
        results.append(fusion.result())
    for a, b in zip(*results):
        assert torch.allclose(a, b)


def test_fused_probabilities_are_the_weighted_mean_of_logits():
    steps = [torch.randn(2, 4, 3, 3) for _ in range(4)]
    fusion = StepFusion(4, 4)
    for logits in steps:
        fusion.add(logits)
    probabilities, uncertainty, class_uncertainty = fusion.result()
    w = fusion_weights(4)
    expected = sum(wi.item() * s.mean(0) for wi, s in zip(w, steps)) / w.sum().item()
    assert torch.allclose(probabilities, torch.softmax(expected, 0), atol=1e-6)
    per_step = torch.stack([normalised_entropy(sample_mean_probabilities(s)) for s in steps])
    assert torch.allclose(uncertainty, per_step.max(0).values)
    assert class_uncertainty.shape == (4, 3, 3)


def test_incomplete_fusion_is_refused():
    fusion = StepFusion(3, 2)
    fusion.add(torch.randn(1, 4, 2, 2))
    with pytest.raises(RuntimeError):
        fusion.result()


def test_heatmap_blends_the_presegmenter_entropy_only_where_it_is_given():
    import numpy as np

    from SpineSegDiffLib.inference.fusion import blend_with_presegmentation
    from SpineSegDiffLib.inference.presegment import normalised_entropy

    diffusion = np.array([[0.05, 0.05, 0.05, 0.81]], np.float32)  # background at 0.05, one doubtful pixel
    alone = blend_with_presegmentation(diffusion, None)
    np.testing.assert_allclose(alone, [[0.0, 0.0, 0.0, 0.8]], atol=1e-6)
    blended = blend_with_presegmentation(diffusion, np.array([[0.4, 0.0, 0.0, 0.2]]))
    np.testing.assert_allclose(blended, [[0.2, 0.0, 0.0, 0.5]], atol=1e-6)
    uniform, certain = np.full((4, 1), 0.25), np.array([[1.0], [0.0], [0.0], [0.0]])
    np.testing.assert_allclose(normalised_entropy(uniform), [1.0], atol=1e-6)
    np.testing.assert_allclose(normalised_entropy(certain), [0.0], atol=1e-6)


def test_the_background_level_of_each_slice_is_removed_so_the_refined_window_has_no_edge():
    import numpy as np

    from SpineSegDiffLib.inference.fusion import without_floor

    rng = np.random.default_rng(0)
    maps = 0.05 + 0.002 * rng.standard_normal((3, 20, 30))  # two slices of background, one noisier
    maps[1] += 0.03
    maps[:, 5:8, 10:14] = 0.9
    cleaned = without_floor(maps.astype(np.float32))
    assert cleaned.dtype == np.float32 and cleaned.min() >= 0 and cleaned.max() <= 1
    assert np.percentile(cleaned[:, 10:, :], 95) < 0.01  # background near zero on every slice
    assert (cleaned[:, 5:8, 10:14] > 0.85).all()  # what was doubtful stays so
