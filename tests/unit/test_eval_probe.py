"""Linear probes: they read out a label a representation holds linearly, and not one it lacks."""

import numpy as np

from fame_ray.eval.probe import linear_probe


def _features(labels, informative: bool, seed: int):
    rng = np.random.default_rng(seed)
    noise = rng.normal(0, 1, (len(labels), 16))
    if informative:
        noise[:, :4] += 3 * np.eye(4)[labels]
    return noise


def test_a_linearly_separable_label_is_read_out():
    labels = np.arange(80) % 4
    accuracy = linear_probe(_features(labels, True, 0), labels, _features(labels, True, 1), labels)
    assert accuracy > 0.9


def test_a_label_the_features_do_not_hold_stays_near_chance():
    labels = np.arange(200) % 4
    accuracy = linear_probe(_features(labels, False, 0), labels, _features(labels, False, 1), labels)
    assert accuracy < 0.4


def test_the_probe_is_deterministic():
    labels = np.arange(40) % 2
    train, test = _features(labels, True, 2), _features(labels, True, 3)
    assert linear_probe(train, labels, test, labels) == linear_probe(train, labels, test, labels)


def test_knn_accuracy_votes_the_nearest_training_features():
    import torch

    from fame_ray.eval.probe import knn_accuracy

    train = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.8, 0.2], [0.0, 1.0], [0.1, 0.9], [0.2, 0.8]])
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    test = torch.tensor([[1.0, 0.05], [0.05, 1.0], [0.7, 0.3]])
    assert knn_accuracy(train, labels, test, torch.tensor([0, 1, 0]), k=3) == 1.0
    assert knn_accuracy(train, labels, test, torch.tensor([1, 0, 0]), k=3) == 1 / 3
    assert knn_accuracy(train, labels, test[:0], torch.tensor([], dtype=torch.long)) != knn_accuracy(
        train, labels, test[:0], torch.tensor([], dtype=torch.long)
    )  # NaN
