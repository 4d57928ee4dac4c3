"""Fitting the disc grader's linear models (full-batch L-BFGS on the CPU, deterministic).

All models see standardised features ``(N, F)`` (see :func:`standardiser`) and return plain-list
parameters in the layout :class:`SpineSegDiffLib.anatomy.grading.DiscGrader` reads:

* ordinal (cumulative logit, proportional odds): ``P(grade <= k) = sigmoid(threshold_k - x . w)``;
* multinomial (softmax) logistic regression: ``softmax(x @ W.T + b)``;
* binary logistic regression for the narrowing and Modic flags.

Penalty: ``l2 / 2 * |w|^2`` on the weights (not the intercepts or thresholds), added to the mean
negative log-likelihood, so ``l2`` plays the role of ``1 / (C * N)`` in scikit-learn terms.
"""

from __future__ import annotations

import numpy as np
import torch

from SpineSegDiffLib.anatomy.grading import GRADES


def standardiser(features: np.ndarray) -> dict[str, list[float]]:
    """Median (imputes nan), mean and standard deviation of each column of ``features`` ``(N, F)``."""
    median = np.nanmedian(features, axis=0)
    filled = np.where(np.isnan(features), median, features)
    scale = filled.std(axis=0)
    return {"median": median.tolist(), "mean": filled.mean(axis=0).tolist(),
            "scale": np.where(scale > 1e-9, scale, 1.0).tolist()}


def minimise(parameters: list[torch.Tensor], objective, steps: int = 200) -> None:
    """Run L-BFGS on ``objective()`` (a scalar tensor) over ``parameters`` in place."""
    optimiser = torch.optim.LBFGS(parameters, lr=1.0, max_iter=steps, tolerance_grad=1e-7,
                                  tolerance_change=1e-10, history_size=20, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = objective()
        loss.backward()
        return loss

    optimiser.step(closure)


def ordinal_probabilities(x: torch.Tensor, weights: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """``(N, F)`` standardised features -> ``(N, K)`` class probabilities; ``thresholds`` ``(K - 1,)`` increasing."""
    cumulative = torch.sigmoid(thresholds[None, :] - (x @ weights)[:, None])
    ones, zeros = torch.ones(len(x), 1, dtype=x.dtype), torch.zeros(len(x), 1, dtype=x.dtype)
    return torch.diff(torch.cat([zeros, cumulative, ones], dim=1), dim=1)


def fit_ordinal(x: np.ndarray, grade: np.ndarray, l2: float, weight: np.ndarray | None = None) -> dict:
    """Cumulative-logit model of ``grade`` ``(N,)`` (0..K-1) on ``x`` ``(N, F)``; optional sample weights."""
    data, target = torch.from_numpy(x).double(), torch.from_numpy(grade.astype(np.int64))
    sample = torch.from_numpy(np.ones(len(x)) if weight is None else weight).double()
    weights = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    first = torch.tensor([-1.5], dtype=torch.float64, requires_grad=True)
    gaps = torch.zeros(len(GRADES) - 2, dtype=torch.float64, requires_grad=True)

    def thresholds() -> torch.Tensor:
        return torch.cumsum(torch.cat([first, torch.nn.functional.softplus(gaps) + 1e-3]), dim=0)

    def objective() -> torch.Tensor:
        probabilities = ordinal_probabilities(data, weights, thresholds()).clamp_min(1e-12)
        likelihood = (sample * probabilities[torch.arange(len(data)), target].log()).sum() / sample.sum()
        return -likelihood + 0.5 * l2 * (weights**2).sum()

    minimise([weights, first, gaps], objective)
    return {"kind": "ordinal", "weights": weights.detach().tolist(), "thresholds": thresholds().detach().tolist()}


def fit_multinomial(x: np.ndarray, grade: np.ndarray, l2: float, weight: np.ndarray | None = None) -> dict:
    """Softmax regression of ``grade`` ``(N,)`` (0..K-1) on ``x`` ``(N, F)``."""
    data, target = torch.from_numpy(x).double(), torch.from_numpy(grade.astype(np.int64))
    sample = torch.from_numpy(np.ones(len(x)) if weight is None else weight).double()
    weights = torch.zeros(len(GRADES), x.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(len(GRADES), dtype=torch.float64, requires_grad=True)

    def objective() -> torch.Tensor:
        losses = torch.nn.functional.cross_entropy(data @ weights.T + bias, target, reduction="none")
        return (sample * losses).sum() / sample.sum() + 0.5 * l2 * (weights**2).sum()

    minimise([weights, bias], objective)
    return {"kind": "multinomial", "weights": weights.detach().tolist(), "bias": bias.detach().tolist()}


def fit_binary(x: np.ndarray, positive: np.ndarray, l2: float) -> dict:
    """Logistic regression of boolean ``positive`` ``(N,)`` on ``x`` ``(N, F)``."""
    data, target = torch.from_numpy(x).double(), torch.from_numpy(positive.astype(np.float64))
    weights = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(1, dtype=torch.float64, requires_grad=True)

    def objective() -> torch.Tensor:
        loss = torch.nn.functional.binary_cross_entropy_with_logits(data @ weights + bias, target)
        return loss + 0.5 * l2 * (weights**2).sum()

    minimise([weights, bias], objective)
    return {"weights": weights.detach().tolist(), "bias": float(bias.detach())}
