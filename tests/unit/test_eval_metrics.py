"""Clip/video top-k accuracy with multi-clip averaging, on hand-computed cases."""

import numpy as np
import pytest

from fame_ray.eval.metrics import clip_scores, multi_clip_metrics, softmax, topk_accuracy, topk_hits, video_scores


def test_softmax_rows_sum_to_one_and_survive_large_logits():
    probs = softmax(np.array([[1000.0, 1000.0], [0.0, np.log(3.0)]]))
    assert np.allclose(probs, [[0.5, 0.5], [0.25, 0.75]])


def test_topk_hits_by_hand():
    scores = np.array([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5]])
    labels = np.array([1, 1, 0])
    assert topk_hits(scores, labels, 1).tolist() == [True, False, False]
    assert topk_hits(scores, labels, 2).tolist() == [True, True, False]
    # k larger than the number of classes is capped: everything is a hit
    assert topk_hits(scores, labels, 5).tolist() == [True, True, True]
    assert topk_accuracy(scores, labels, (1, 2)) == {1: pytest.approx(1 / 3), 2: pytest.approx(2 / 3)}


def test_video_accuracy_averages_softmax_over_clips():
    # video 0 (label 0): clip A says class 1 weakly, clip B says class 0 strongly -> video right
    # video 1 (label 2): both clips wrong at top-1 but right at top-2; averaged, classes 0
    # and 1 (0.445 each) push class 2 (0.115) out of the video's top-2
    logits = np.array(
        [
            [0.0, 0.5, -5.0],  # video 0, clip wrong
            [4.0, 0.0, -5.0],  # video 0, clip right
            [3.0, 0.0, 1.0],  # video 1, softmax [.848 .042 .115]
            [0.0, 3.0, 1.0],  # video 1, softmax [.042 .848 .115]
        ]
    )
    labels = np.array([0, 0, 2, 2])
    videos = np.array([7, 7, 3, 3])
    metrics = multi_clip_metrics(logits, labels, videos, ks=(1, 2), rule="softmax")
    assert metrics["clip_top1"] == pytest.approx(0.25)
    assert metrics["clip_top2"] == pytest.approx(1.0)
    assert metrics["video_top1"] == pytest.approx(0.5)
    assert metrics["video_top2"] == pytest.approx(0.5)
    assert (metrics["clips"], metrics["videos"]) == (4, 2)


def test_video_scores_are_the_mean_of_clip_softmax_with_the_softmax_rule():
    logits = np.array([[0.0, 0.0], [0.0, np.log(3.0)], [5.0, 0.0]])
    ids, scores, labels, counts = video_scores(clip_scores(logits, "softmax"), np.array([1, 1, 0]), np.array([2, 2, 9]))
    assert ids.tolist() == [2, 9]
    assert np.allclose(scores[0], [(0.5 + 0.25) / 2, (0.5 + 0.75) / 2])
    assert labels.tolist() == [1, 0] and counts.tolist() == [2, 1]


def test_multi_clip_beats_single_clip_when_clips_disagree():
    # 10 clips, 4 right with high confidence, 6 wrong with low confidence: clip top-1 40%, video right
    right = [[6.0, 0.0]] * 4
    wrong = [[0.0, 0.3]] * 6
    metrics = multi_clip_metrics(np.array(right + wrong), np.zeros(10, int), np.zeros(10, int), ks=(1,))
    assert metrics["clip_top1"] == pytest.approx(0.4)
    assert metrics["video_top1"] == 1.0


def test_the_official_video_score_is_the_mean_of_raw_outputs():
    """Logits for R(2+1)D (its classifier is a plain Linear), log-softmax for I3D (the official
    I3D classifier ends in log_softmax): a case where these and the mean softmax disagree."""
    logits = np.array([[3.0, 0.0], [0.0, 1.0], [0.0, 1.0]])  # one sure clip for class 0, two mild ones for 1
    labels, videos = np.zeros(3, int), np.zeros(3, int)
    assert multi_clip_metrics(logits, labels, videos, ks=(1,), rule="official", arch="r2plus1d_18")["video_top1"] == 1.0
    assert multi_clip_metrics(logits, labels, videos, ks=(1,), rule="softmax")["video_top1"] == 0.0
    log_probs = clip_scores(logits, "official", "i3d")
    assert np.allclose(np.exp(log_probs).sum(1), 1) and np.allclose(
        log_probs, logits - np.log(np.exp(logits).sum(1, keepdims=True))
    )


def test_clips_of_one_video_with_different_labels_are_an_error():
    with pytest.raises(ValueError):
        video_scores(np.zeros((2, 3)), np.array([0, 1]), np.array([5, 5]))


def test_empty_input_gives_nan_not_a_crash():
    metrics = multi_clip_metrics(np.zeros((0, 3)), np.zeros(0, int), np.zeros(0, int))
    assert np.isnan(metrics["video_top1"]) and metrics["videos"] == 0
