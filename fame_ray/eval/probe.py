"""Linear probes on frozen features (pure torch, CPU): how much of a label a representation
holds, read out by a linear classifier.

    accuracy = linear_probe(train_features, train_labels, test_features, test_labels)

Features are standardised with the training set's mean and deviation, then a multinomial
logistic regression with an L2 penalty is fitted by full-batch L-BFGS (deterministic: no
sampling). The penalty is small and fixed, so the read-out compares representations, not
tuning effort.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

# L2 penalty on the weights (per sample); the same for every representation compared.
WEIGHT_DECAY = 1e-3
ITERATIONS = 200


def _standardise(train: np.ndarray, test: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    train_t = torch.as_tensor(np.asarray(train), dtype=torch.float64)
    test_t = torch.as_tensor(np.asarray(test), dtype=torch.float64)
    mean, std = train_t.mean(0, keepdim=True), train_t.std(0, keepdim=True).clamp_min(1e-6)
    return (train_t - mean) / std, (test_t - mean) / std


def fit_linear(
    features: torch.Tensor, labels: torch.Tensor, classes: int, weight_decay: float = WEIGHT_DECAY
) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight `D K`, bias `K`) of an L2-penalised logistic regression, by L-BFGS."""
    weight = torch.zeros(features.shape[1], classes, dtype=features.dtype, requires_grad=True)
    bias = torch.zeros(classes, dtype=features.dtype, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=ITERATIONS, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(features @ weight + bias, labels) + weight_decay * weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return weight.detach(), bias.detach()


def linear_probe(
    train_features: np.ndarray, train_labels: np.ndarray, test_features: np.ndarray, test_labels: np.ndarray
) -> float:
    """Test accuracy in [0, 1] of a linear classifier fitted on the training features."""
    train_labels_t = torch.as_tensor(np.asarray(train_labels), dtype=torch.long)
    test_labels_t = torch.as_tensor(np.asarray(test_labels), dtype=torch.long)
    if len(test_labels_t) == 0:
        return float("nan")
    train_x, test_x = _standardise(train_features, test_features)
    classes = int(max(train_labels_t.max(), test_labels_t.max())) + 1
    weight, bias = fit_linear(train_x, train_labels_t, classes)
    predictions = (test_x @ weight + bias).argmax(dim=1)
    return float((predictions == test_labels_t).double().mean())
