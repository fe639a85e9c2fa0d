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
