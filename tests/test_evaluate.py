"""Tests of lrp_tutor.evaluate: pixel flipping / AOPC, randomisation check, SSIM, Spearman.

The cases are built so that the answer is known: a model that reads one pixel, linear
models whose gradient is their weight, constant images whose SSIM is a closed form.
"""

from __future__ import annotations

import copy
import math

import matplotlib
import numpy as np
import pytest
import torch
from torch import nn

from lrp_tutor import evaluate
from lrp_tutor.errors import InputError
from lrp_tutor.evaluate import (
    ComparisonResult,
    FlippingResult,
    RandomizationResult,
    compare_rules,
    gradient,
    gradient_x_input,
    pixel_flipping,
    randomization_check,
    rankdata,
    spearman,
    ssim,
)

matplotlib.use("Agg")

DTYPE = torch.float64
H = W = 4
P = H * W
K = 6  # the one pixel the model reads
WEIGHT = 2.5


def one_pixel_model(k: int = K, channels: int = 1) -> nn.Module:
    """Class 0 is WEIGHT · (sum over channels of pixel k); class 1 is constant 0."""
    linear = nn.Linear(channels * P, 2, bias=False)
    with torch.no_grad():
        linear.weight.zero_()
        for c in range(channels):
            linear.weight[0, c * P + k] = WEIGHT
    return nn.Sequential(nn.Flatten(), linear).to(DTYPE)


def positive_images(n: int = 5, channels: int = 1, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return 0.5 + torch.rand(n, channels, H, W, generator=generator, dtype=DTYPE)


def onehot_relevance(x: torch.Tensor, pixel: int, value: float = 1.0) -> torch.Tensor:
    r = torch.zeros_like(x).flatten(2)
    r[:, :, pixel] = value
    return r.reshape(x.shape)


def reference_flipping(model, x, relevance, target, steps, patch, baseline=0.0):
    """The definition, one sample and one step at a time, with Python loops and sorting."""
    n, c, h, w = x.shape
    rows, cols = math.ceil(h / patch), math.ceil(w / patch)
    curves = np.zeros((n, steps + 1))
    for s in range(n):
        region_relevance = []
        for a in range(rows):
            for b in range(cols):
                block = relevance[s, :, a * patch : (a + 1) * patch, b * patch : (b + 1) * patch]
                region_relevance.append((-float(block.sum()), a * cols + b, a, b))
        ordered = sorted(region_relevance)  # most relevant first, ties by region index
        for k in range(steps + 1):
            removed = (k * rows * cols) // steps
            xk = x[s : s + 1].clone()
            for _, _, a, b in ordered[:removed]:
                xk[0, :, a * patch : (a + 1) * patch, b * patch : (b + 1) * patch] = baseline
            with torch.no_grad():
                curves[s, k] = float(model(xk)[0, target])
    return curves


# ----------------------------------------------------------------------------------------
# Pixel flipping


def test_flipping_the_pixel_the_model_reads_gives_the_steepest_drop():
    model, x = one_pixel_model(), positive_images()
    f0 = WEIGHT * x[:, 0].flatten(1)[:, K]
    drops = []
    for pixel in range(P):
        result = pixel_flipping(model, x, onehot_relevance(x, pixel), 0, steps=P, progress=False)
        drops.append(result.drops[:, 1])
    drops = np.array(drops)  # (pixel removed first, sample)
    np.testing.assert_allclose(drops[K], f0.numpy(), rtol=1e-12)
    assert np.all(np.delete(drops, K, axis=0) == 0.0)


def test_aopc_follows_its_definition_for_best_worst_and_random_orders():
    model, x = one_pixel_model(), positive_images(n=8)
    f0 = (WEIGHT * x[:, 0].flatten(1)[:, K]).numpy()
    relevance = gradient_x_input(model, x, 0)  # nonzero only at pixel K
    kwargs = {"steps": P, "progress": False}
    best = pixel_flipping(model, x, relevance, 0, **kwargs)
    worst = pixel_flipping(model, x, relevance, 0, order="least-relevant", **kwargs)
    random = pixel_flipping(model, x, None, 0, order="random", seed=3, **kwargs)
    # best: the score is 0 from step 1 on; worst: pixel K is the last of the P regions
    np.testing.assert_allclose(best.aopc, f0 * P / (P + 1), rtol=1e-12)
    np.testing.assert_allclose(worst.aopc, f0 * 1 / (P + 1), rtol=1e-12)
    np.testing.assert_allclose(best.aopc, best.drops.mean(axis=1), rtol=1e-12)
    assert best.aopc_mean > random.aopc_mean > worst.aopc_mean
    assert np.all(best.aopc >= random.aopc) and np.all(random.aopc >= worst.aopc)
    np.testing.assert_allclose(best.curve, best.scores.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(best.fractions, np.arange(P + 1) / P, rtol=0, atol=0)


@pytest.mark.parametrize(("steps", "patch"), [(16, 1), (5, 1), (4, 2), (3, 3), (1, 4)])
def test_flipping_matches_a_loop_over_the_definition(steps, patch):
    generator = torch.Generator().manual_seed(1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(2 * P, 6), nn.Tanh(), nn.Linear(6, 3)).to(DTYPE)
    x = torch.randn(3, 2, H, W, generator=generator, dtype=DTYPE)
    relevance = torch.randn(3, 2, H, W, generator=generator, dtype=DTYPE)
    expected = reference_flipping(model, x, relevance, 2, steps, patch, baseline=0.3)
    result = pixel_flipping(
        model, x, relevance, 2, steps=steps, patch_size=patch, baseline=0.3, progress=False
    )
    np.testing.assert_allclose(result.scores, expected, rtol=1e-12, atol=1e-12)
    aopc = np.mean(expected[:, :1] - expected, axis=1)
    np.testing.assert_allclose(result.aopc, aopc, rtol=1e-12, atol=1e-12)


def test_batched_and_unbatched_flipping_agree():
    generator = torch.Generator().manual_seed(2)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(64, 5))
    model = model.to(DTYPE)
    x = torch.randn(4, 3, H, W, generator=generator, dtype=DTYPE)
    relevance = torch.randn(4, 3, H, W, generator=generator, dtype=DTYPE)
    results = [
        pixel_flipping(model, x, relevance, None, steps=8, batch_size=b, progress=False)
        for b in (1, 5, 1000)
    ]
    for other in results[1:]:
        np.testing.assert_allclose(other.scores, results[0].scores, rtol=1e-12, atol=1e-13)
    target = model(x).argmax(1).numpy()
    np.testing.assert_array_equal(results[0].target, target)


class Recorder(nn.Module):
    """Records every input it sees; its two logits are the sums of channels 0 and 1."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.clone())
        return torch.stack([x[:, 0].flatten(1).sum(1), x[:, 1].flatten(1).sum(1)], dim=1)


def test_regions_are_ranked_by_relevance_summed_over_channels_and_patches():
    x = positive_images(n=1, channels=3)
    relevance = torch.zeros_like(x)
    relevance[0, 0, 0, 0] = 5.0  # the largest single value, in patch (0, 0)
    relevance[0, :, 2:, 2:] = 0.7  # patch (1, 1): 3 channels × 4 pixels × 0.7 = 8.4 > 5
    relevance[0, 1, 0, 3] = 9.0  # patch (0, 1): 9 − 9 = 0 after the channel sum
    relevance[0, 2, 0, 3] = -9.0
    model = Recorder()
    pixel_flipping(model, x, relevance, 0, steps=4, patch_size=2, batch_size=1, progress=False)
    seen = [t for t in model.seen if t.shape[0] == 1][-5:]  # the 5 steps (after the target)
    removed = [(t == 0).all(dim=1)[0] for t in seen]  # where every channel was removed
    assert not removed[0].any()
    expected = torch.zeros(H, W, dtype=torch.bool)
    expected[2:, 2:] = True
    assert torch.equal(removed[1], expected)
    expected[:2, :2] = True
    assert torch.equal(removed[2], expected)
    assert torch.equal(removed[4], torch.ones(H, W, dtype=torch.bool))
    for t, mask in zip(seen, removed, strict=True):  # untouched pixels keep their values
        assert torch.equal(t[0][:, ~mask], x[0][:, ~mask])


def test_uneven_patches_cover_the_whole_image():
    x = 1.0 + torch.rand(2, 2, 5, 5, dtype=DTYPE)
    model = Recorder()
    result = pixel_flipping(model, x, None, 0, order="random", patch_size=2, progress=False)
    assert result.steps == 9  # ceil(5/2)² regions, one per step
    assert (model.seen[-1][-1] == 0).all()  # the last step has removed everything


def test_modes_replace_regions_by_a_value_a_blur_or_a_baseline_image():
    x = positive_images(n=2, channels=2)
    relevance = onehot_relevance(x, 0)
    per_channel = torch.tensor([-1.0, 3.0], dtype=DTYPE).reshape(2, 1, 1)
    kwargs = {"steps": P, "batch_size": 1, "progress": False}  # seen[-1]: sample 1, step L
    model = Recorder()
    pixel_flipping(model, x, relevance, 0, mode="remove", baseline=per_channel, **kwargs)
    assert torch.equal(model.seen[-1][0], per_channel.expand(2, H, W))

    image = torch.rand(2, H, W, dtype=DTYPE)
    model = Recorder()
    pixel_flipping(model, x, relevance, 0, mode="baseline", baseline=image, **kwargs)
    assert torch.equal(model.seen[-1][0], image)

    model = Recorder()
    pixel_flipping(model, x, relevance, 0, mode="blur", blur_sigma=1.0, **kwargs)
    np.testing.assert_allclose(model.seen[-1][0], evaluate.gaussian_blur(x, 1.0)[1], rtol=1e-12)

    constant = torch.full((1, 1, H, W), 0.7, dtype=DTYPE)  # a blurred constant is itself
    flat = pixel_flipping(
        one_pixel_model(), constant, onehot_relevance(constant, K), 0, mode="blur"
    )
    np.testing.assert_allclose(flat.scores, WEIGHT * 0.7, rtol=1e-12)


def test_gaussian_blur_keeps_the_mean_of_an_interior_point_and_is_symmetric():
    x = torch.zeros(1, 1, 15, 15, dtype=DTYPE)
    x[0, 0, 7, 7] = 1.0
    blurred = evaluate.gaussian_blur(x, 1.5)
    assert abs(float(blurred.sum()) - 1.0) < 1e-12
    assert torch.allclose(blurred, blurred.flip(-1)) and torch.allclose(blurred, blurred.mT)
    assert blurred[0, 0, 7, 7] == blurred.max()


def test_flipping_works_on_features_without_channels():
    model = nn.Linear(6, 1, bias=False).to(DTYPE)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.0, 0.0, 0.0, 1.0, 0.0, 0.0]]))
    x = torch.ones(2, 6, dtype=DTYPE)
    result = pixel_flipping(model, x, gradient, 0, steps=3, patch_size=2, progress=False)
    # regions {0,1}, {2,3}, {4,5}: the one with feature 3 goes first
    np.testing.assert_array_equal(result.scores, [[1.0, 0.0, 0.0, 0.0]] * 2)
    assert result.label == "gradient"


def test_random_order_is_seeded_and_needs_no_relevance():
    model, x = one_pixel_model(), positive_images()
    a = pixel_flipping(model, x, None, 0, order="random", seed=7, progress=False)
    b = pixel_flipping(model, x, None, 0, order="random", seed=7, progress=False)
    c = pixel_flipping(model, x, None, 0, order="random", seed=8, progress=False)
    np.testing.assert_array_equal(a.scores, b.scores)
    assert not np.array_equal(a.scores, c.scores)
    assert a.label == "random"


def test_flipping_leaves_the_model_as_it_was():
    model = nn.Sequential(nn.Flatten(), nn.Linear(P, 4), nn.Dropout(0.5), nn.Linear(4, 2))
    model = model.to(DTYPE).train()
    model[3].eval()
    before = copy.deepcopy(model.state_dict())
    flags = [m.training for m in model.modules()]
    x = positive_images()
    a = pixel_flipping(model, x, gradient, None, steps=4, progress=False)
    b = pixel_flipping(model, x, gradient, None, steps=4, progress=False)
    np.testing.assert_array_equal(a.scores, b.scores)  # dropout is off while evaluating
    assert [m.training for m in model.modules()] == flags
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def test_progress_bar_shows_only_when_asked(capsys):
    model, x = one_pixel_model(), positive_images(n=2)
    pixel_flipping(model, x, None, 0, order="random", batch_size=4, progress=False)
    assert "pixel flipping" not in capsys.readouterr().err
    pixel_flipping(model, x, None, 0, order="random", batch_size=4, progress=True)
    assert "pixel flipping" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"steps": P + 1}, "more than the 16 regions"),
        ({"mode": "erase"}, "mode must be one of"),
        ({"order": "best"}, "order must be one of"),
        ({"batch_size": 0}, "batch_size"),
        ({"patch_size": (2,)}, "patch_size"),
        ({"relevance": torch.zeros(5, 1, 4, 3, dtype=DTYPE)}, "shape"),
        ({"relevance": None}, "needs a relevance map"),
        ({"target": 2}, "out of range"),
        ({"target": [0, 1]}, "one int per sample"),
        ({"mode": "baseline", "baseline": 0.0}, "baseline image"),
        ({"baseline": torch.zeros(3, 1, 1)}, "does not broadcast"),
        ({"relevance": torch.full((5, 1, H, W), math.nan, dtype=DTYPE)}, "NaN"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, message):
    model, x = one_pixel_model(), positive_images()
    arguments = {"relevance": onehot_relevance(x, K), "target": 0, **kwargs}
    with pytest.raises(InputError, match=message):
        pixel_flipping(model, x, progress=False, **arguments)


def test_blur_needs_spatial_axes():
    with pytest.raises(InputError, match="spatial axes"):
        pixel_flipping(nn.Linear(3, 2), torch.rand(2, 3), None, 0, order="random", mode="blur")


# ----------------------------------------------------------------------------------------
# Baselines


def test_gradient_and_gradient_x_input_of_a_linear_model():
    generator = torch.Generator().manual_seed(4)
    model = nn.Linear(5, 3).to(DTYPE).train()
    x = torch.randn(4, 5, generator=generator, dtype=DTYPE)
    target = [0, 2, 1, 2]
    expected = model.weight.detach()[target]
    assert torch.equal(gradient(model, x, target), expected)
    torch.testing.assert_close(gradient_x_input(model, x, target), x * expected, rtol=0, atol=0)
    assert model.training and all(p.grad is None for p in model.parameters())


# ----------------------------------------------------------------------------------------
# Similarity measures


def test_ssim_of_identical_images_is_one():
    generator = torch.Generator().manual_seed(5)
    a = torch.randn(20, 17, generator=generator, dtype=DTYPE)
    assert ssim(a, a) == 1.0
    assert ssim(a[0], a[0], data_range=2.0) == 1.0  # a 1-D signal


def test_ssim_of_constant_images_is_the_luminance_term():
    for value_a, value_b, data_range in [(0.2, 0.6, 1.0), (0.0, 1.0, 1.0), (3.0, -2.0, 10.0)]:
        a, b = np.full((9, 13), value_a), np.full((9, 13), value_b)
        c1 = (0.01 * data_range) ** 2
        expected = (2 * value_a * value_b + c1) / (value_a**2 + value_b**2 + c1)
        assert abs(ssim(a, b, data_range=data_range) - expected) < 1e-12


def test_ssim_of_one_window_follows_wang_et_al():
    """An 11 × 11 image holds exactly one Gaussian window: SSIM is eq. 13 of Wang et al."""
    rng = np.random.default_rng(6)
    a, b = rng.random((11, 11)), rng.random((11, 11))
    t = np.arange(11) - 5.0
    g = np.exp(-(t**2) / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    mu_a, mu_b = (w * a).sum(), (w * b).sum()
    var_a, var_b = (w * (a - mu_a) ** 2).sum(), (w * (b - mu_b) ** 2).sum()
    cov = (w * (a - mu_a) * (b - mu_b)).sum()
    c1, c2 = 0.01**2, 0.03**2
    expected = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / (
        (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    )
    assert abs(ssim(a, b, data_range=1.0) - expected) < 1e-12
    assert abs(ssim(a, b, data_range=1.0) - ssim(b, a, data_range=1.0)) < 1e-15


def test_ssim_agrees_with_scikit_image():
    metrics = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(7)
    a = rng.random((24, 30))
    b = np.clip(a + 0.2 * rng.standard_normal(a.shape), 0, 1)
    expected = metrics.structural_similarity(
        a, b, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    assert abs(ssim(a, b, data_range=1.0) - expected) < 1e-10


def test_spearman_with_ties_and_constant_maps():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 1000]) == 1.0
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))
    np.testing.assert_array_equal(rankdata([3.0, 1.0, 3.0, 3.0, 2.0]), [4.0, 1.0, 4.0, 4.0, 2.0])
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(8)
    a, b = rng.integers(0, 4, 50).astype(float), rng.integers(0, 5, 50).astype(float)
    assert abs(spearman(a, b) - stats.spearmanr(a, b).statistic) < 1e-12
    np.testing.assert_array_equal(rankdata(a), stats.rankdata(a))


# ----------------------------------------------------------------------------------------
# Randomisation check


def mlp() -> nn.Module:
    torch.manual_seed(9)
    return nn.Sequential(
        nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3)
    ).to(DTYPE)


def input_explainer(model, x, target):
    """Ignores the model: an edge-detector-like map made from the input alone."""
    return x.clone()


def test_randomization_check_leaves_the_model_and_the_rng_alone():
    model = mlp().train()
    model[2].eval()
    model[0].weight.requires_grad_(False)
    before = copy.deepcopy(model.state_dict())
    flags = [m.training for m in model.modules()]
    requires = [p.requires_grad for p in model.parameters()]
    x = torch.rand(4, 12, dtype=DTYPE)
    rng = torch.get_rng_state()
    randomization_check(model, x, None, gradient_x_input)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert [m.training for m in model.modules()] == flags
    assert [p.requires_grad for p in model.parameters()] == requires
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(torch.get_rng_state(), rng)


def test_an_explainer_that_ignores_the_model_is_flagged():
    x = torch.rand(4, 12, dtype=DTYPE)
    result = randomization_check(mlp(), x, None, input_explainer)
    assert result.flagged and "FLAGGED" in result.verdict
    for values in result.similarity.values():
        np.testing.assert_allclose(values, 1.0, rtol=0, atol=1e-12)


def test_gradient_x_input_of_a_randomised_linear_model_changes():
    torch.manual_seed(10)
    model = nn.Linear(64, 3).to(DTYPE)
    x = 0.5 + torch.rand(6, 64, dtype=DTYPE)
    result = randomization_check(model, x, 1, gradient_x_input)
    assert result.steps == ["original", ""]  # the model itself is the one layer
    assert not result.flagged and "Passed" in result.verdict
    assert result.final < 0.5
    np.testing.assert_allclose(result.similarity["spearman"][0], 1.0, rtol=0, atol=1e-12)
    # the randomised explanation is x ⊙ (new weight row 1), computed independently
    fresh = nn.Linear(64, 3).to(DTYPE)
    with torch.random.fork_rng():
        torch.manual_seed(1)  # step 1 uses seed + 1
        fresh.reset_parameters()
    np.testing.assert_allclose(result.heatmaps[1], (x * fresh.weight[1]).detach(), rtol=1e-12)


def test_cascading_and_independent_orders_randomise_the_right_layers():
    model, x = mlp(), torch.rand(2, 12, dtype=DTYPE)
    original = {name: p.detach().clone() for name, p in model.named_parameters()}
    seen: list[set[str]] = []

    def recording_explainer(m, inputs, target):
        changed = {
            n.split(".")[0] for n, p in m.named_parameters() if not torch.equal(p, original[n])
        }
        seen.append(changed)
        return inputs

    randomization_check(model, x, 0, recording_explainer)
    assert seen == [set(), {"4"}, {"4", "2"}, {"4", "2", "0"}]
    seen.clear()
    result = randomization_check(model, x, 0, recording_explainer, order="bottom-up")
    assert seen == [set(), {"0"}, {"0", "2"}, {"0", "2", "4"}]
    assert result.steps == ["original", "0", "2", "4"]
    seen.clear()
    randomization_check(model, x, 0, recording_explainer, order="independent", layers=["0", "4"])
    assert seen == [set(), {"0"}, {"4"}]


def test_randomization_keeps_the_target_and_is_reproducible():
    model, x = mlp(), torch.rand(5, 12, dtype=DTYPE)
    targets = []

    def explainer(m, inputs, target):
        targets.append(target.clone())
        return gradient_x_input(m, inputs, target)

    a = randomization_check(model, x, None, explainer, seed=3)
    predicted = model(x).argmax(1)
    assert all(torch.equal(t, predicted) for t in targets)
    b = randomization_check(model, x, None, gradient_x_input, seed=3)
    c = randomization_check(model, x, None, gradient_x_input, seed=4)
    for measure in a.similarity:
        np.testing.assert_array_equal(a.similarity[measure], b.similarity[measure])
    assert not np.array_equal(a.similarity["spearman"], c.similarity["spearman"])


def _randomization_result(spearman_abs, spearman, ssim, **kwargs):
    """A result whose fully randomised step has the given mean similarities (2 samples)."""
    values = {"spearman_abs": spearman_abs, "spearman": spearman, "ssim": ssim}
    similarity = {m: np.array([[1.0, 1.0], [v - 0.01, v + 0.01]]) for m, v in values.items()}
    return RandomizationResult(
        steps=["original", "0"], similarity=similarity, heatmaps=np.zeros((2, 2, 3)), **kwargs
    )


def test_the_verdict_says_an_explanation_ignores_the_model_only_if_every_measure_agrees():
    same = _randomization_result(0.95, 0.9, 0.8, label="copy")
    assert same.flagged and same.verdict.startswith("FLAGGED: 'copy'")
    assert "does not depend on what the model learned" in same.verdict
    assert "spearman = 0.9" in same.verdict and "ssim = 0.8" in same.verdict

    # |h| ranks alike, the signed map changed: the digits' zero background (notebook 08)
    magnitudes = _randomization_result(0.93, -0.03, 0.03, label="ε")
    assert magnitudes.flagged and magnitudes.verdict.startswith("FLAGGED by spearman_abs")
    assert "does not depend" not in magnitudes.verdict
    assert "spearman_abs = 0.93 ≥ 0.5" in magnitudes.verdict
    assert "spearman = -0.03, ssim = 0.03 < 0.5" in magnitudes.verdict
    assert "structure of the input" in magnitudes.verdict

    passed = _randomization_result(0.2, 0.1, 0.6, label="g")
    assert not passed.flagged and passed.verdict.startswith("Passed")
    assert "although ssim = 0.6 ≥ 0.5" in passed.verdict
    clean = _randomization_result(0.2, 0.1, 0.1, label="g")
    assert clean.verdict == (
        "Passed: The explanation of 'g' changes when the model is randomised "
        "(spearman_abs = 0.2 < 0.5)."
    )
    # the flag may read another measure: then that one decides
    by_ssim = _randomization_result(0.93, -0.03, 0.03, measure="ssim")
    assert not by_ssim.flagged and "although spearman_abs = 0.93 ≥ 0.5" in by_ssim.verdict


def test_an_input_weighted_explainer_on_a_zero_background_is_not_said_to_ignore_the_model():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 3)).to(DTYPE)
    x = torch.zeros(6, 32, dtype=DTYPE)
    x[:, :10] = 0.5 + torch.rand(6, 10, dtype=DTYPE)  # two thirds of every input are 0
    result = randomization_check(model, x, 0, gradient_x_input)
    assert result.flagged  # |h| is 0 on the same pixels, whatever the weights
    assert result.final_of("spearman") < 0.5  # but the signed map changed
    assert "does not depend" not in result.verdict
    assert result.verdict.startswith("FLAGGED by spearman_abs")


def test_randomization_check_errors():
    model, x = mlp(), torch.rand(2, 12, dtype=DTYPE)
    with pytest.raises(InputError, match="no layer '7'"):
        randomization_check(model, x, 0, gradient, layers=["7"])
    with pytest.raises(InputError, match="order must be one of"):
        randomization_check(model, x, 0, gradient, order="sideways")
    with pytest.raises(InputError, match="shape"):
        randomization_check(model, x, 0, lambda m, x, t: x[:, :3])


# ----------------------------------------------------------------------------------------
# Comparing methods, figures


def test_compare_rules_ranks_the_right_explanation_first():
    model, x = one_pixel_model(), positive_images(n=8)  # 4 leave it within noise of random

    def backwards(m, inputs, target):  # ranks pixel K last
        return -gradient_x_input(m, inputs, target)

    result = compare_rules(model, x, 0, {"grad×input": gradient_x_input, "backwards": backwards})
    assert [row["method"] for row in result.table] == ["grad×input", "backwards", "random order"]
    aopc = {row["method"]: row["aopc_mean"] for row in result.table}
    assert aopc["grad×input"] > aopc["random order"] > aopc["backwards"]
    assert result.best == "grad×input"
    assert "grad×input" in repr(result) and "<table>" in result._repr_html_()
    assert result["backwards"].label == "backwards"


def _flipping(aopc, label):
    """A result whose per-sample AOPC is ``aopc``: one step, f(x⁽⁰⁾) = 0, f(x⁽¹⁾) = −2·AOPC."""
    aopc = np.asarray(aopc, dtype=float)
    scores = np.stack([np.zeros_like(aopc), -2.0 * aopc], axis=1)
    return FlippingResult(np.array([0.0, 1.0]), scores, np.zeros(len(aopc), int), label=label)


def test_best_is_named_only_when_the_lead_exceeds_the_noise():
    rng = np.random.default_rng(0)
    base = rng.normal(10.0, 3.0, size=20)
    noise = rng.normal(0.0, 1.0, size=20)
    noise -= noise.mean()  # the paired difference has mean 0.1, standard error ≈ 0.16
    close = ComparisonResult(
        {"a": _flipping(base + 0.1 + noise, "a"), "b": _flipping(base, "b"),
         "floor": _flipping(base - 5.0, "floor")}
    )  # fmt: skip
    mean, stderr = close.difference("a", "b")
    assert mean == pytest.approx(0.1) and stderr == pytest.approx(np.std(noise, ddof=1) / 20**0.5)
    assert close.leaders() == ["a", "b"] and close.best is None
    assert close.verdict().startswith("no single best: a, b are within 2 standard errors")
    assert "<b>" not in close._repr_html_()
    lines = close.versus("floor").splitlines()
    assert lines[1].startswith("a ") and lines[1].endswith("ahead")
    assert lines[2].startswith("b ") and lines[2].endswith("ahead")
    assert close.versus("b").splitlines()[1].endswith("within noise")

    clear = ComparisonResult({"a": _flipping(base + 1.0 + noise, "a"), "b": _flipping(base, "b")})
    assert clear.leaders() == ["a"] and clear.best == "a"
    assert clear.verdict().startswith("best: a (ahead of b by 1 ± 0.16, more than 2")
    assert "<b>a</b>" in clear._repr_html_()
    assert clear.versus("a").splitlines()[1].endswith("behind")

    one = ComparisonResult({"a": _flipping([3.0], "a"), "b": _flipping([1.0], "b")})
    assert one.best is None and "no estimate of the noise" in one.verdict()


def test_compare_rules_passes_rules_and_composites_to_the_fast_path(monkeypatch):
    import lrp_tutor.fast as fast
    from lrp_tutor.composites import epsilon_plus_flat
    from lrp_tutor.rules import Epsilon

    calls = []

    class Explanation:
        def __init__(self, relevance):
            self.relevance = relevance

    def explain(model, x, target=None, rule=None, composite=None, init="logit"):
        calls.append((rule, composite, target.tolist()))
        return Explanation(gradient_x_input(model, x, target))

    monkeypatch.setattr(fast, "explain", explain, raising=False)
    model, x = one_pixel_model(), positive_images(n=2)
    rule, composite = Epsilon(0.25), epsilon_plus_flat()
    result = compare_rules(model, x, 0, {"ε": rule, "composite": composite}, steps=4)
    assert calls == [(rule, None, [0, 0]), (None, composite, [0, 0])]
    np.testing.assert_array_equal(result["ε"].scores, result["composite"].scores)


def test_lrp0_and_gradient_x_input_flip_alike_on_a_bias_free_relu_net():
    fast = pytest.importorskip("lrp_tutor.fast")
    if not hasattr(fast, "explain"):
        pytest.skip("lrp_tutor.fast.explain is not there yet")
    from lrp_tutor.rules import LRP0

    torch.manual_seed(11)
    model = nn.Sequential(
        nn.Flatten(), nn.Linear(P, 8, bias=False), nn.ReLU(), nn.Linear(8, 3, bias=False)
    ).to(DTYPE)
    x = positive_images(n=3)
    result = compare_rules(model, x, None, {"LRP-0": LRP0(), "g×i": gradient_x_input}, steps=8)
    np.testing.assert_allclose(result["LRP-0"].scores, result["g×i"].scores, rtol=1e-10)


def test_figures_are_drawn_with_aopc_in_the_legend():
    from matplotlib.figure import Figure

    from lrp_tutor.viz import curves, style

    model, x = one_pixel_model(), positive_images(n=3)
    comparison = compare_rules(model, x, 0, {"grad×input": gradient_x_input}, steps=4)
    fig = comparison.plot()
    assert isinstance(fig, Figure)
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend[0].startswith("grad×input (AOPC ") and "random order" in legend[1]
    bars = comparison.bars()
    heights = [float(p.get_height()) for p in bars.axes[0].patches]
    np.testing.assert_allclose(heights, [r["aopc_mean"] for r in comparison.table])
    check = randomization_check(mlp(), torch.rand(2, 12, dtype=DTYPE), 0, input_explainer)
    with style.lecture_mode():
        fig = check.plot()
    assert "FLAGGED" in fig.axes[0].get_title()
    ticks = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert ticks == ["original", "4 (Linear)", "+ 2 (Linear)", "+ 0 (Linear)"]
    assert isinstance(curves.flipping_curves([comparison["grad×input"]]), Figure)
    with pytest.raises(InputError):
        curves.flipping_curves([])


def test_flipping_result_repr_names_the_aopc():
    result = FlippingResult(np.linspace(0, 1, 3), np.array([[2.0, 1.0, 0.0]]), np.array([0]))
    assert result.aopc_mean == 1.0 and "AOPC = 1 ± 0" in repr(result)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_flipping_and_randomization_on_the_gpu_match_the_cpu():
    model, x = mlp(), torch.rand(3, 12, dtype=DTYPE)
    relevance = gradient_x_input(model, x, 0)
    cpu = pixel_flipping(model, x, relevance, 0, progress=False)
    gpu = pixel_flipping(model.cuda(), x.cuda(), relevance.cuda(), 0, progress=False)
    np.testing.assert_allclose(gpu.scores, cpu.scores, rtol=1e-10, atol=1e-12)
    check = randomization_check(model, x.cuda(), 0, gradient_x_input)
    assert check.heatmaps.shape == (4, 3, 12)
    assert next(model.parameters()).is_cuda
