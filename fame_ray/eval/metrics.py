"""Clip- and video-level accuracy with multi-clip testing (docs/recipe.md, "Finetuning").

The official protocol tests N clips per video (default 10, uniformly spaced, centre crop)
and averages the clips' raw outputs into one video score: the classifier's logits for
R(2+1)D, its log-softmax for I3D, whose official classifier ends in a log_softmax
(`VIDEO_SCORES["official"]`). Averaging probabilities instead (`"softmax"`) is fame-ray's
option; it weighs a confident clip less. Clip accuracy counts every clip on its own; video
accuracy counts each video once. Everything here is pure numpy over arrays: logits `N K` (N
clips, K classes), labels `N`, video ids `N`.
"""

from __future__ import annotations

import numpy as np

TOPK = (1, 5)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of `N K` logits, stable for large values."""
    logits = np.asarray(logits, dtype=np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def topk_hits(scores: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """`N` booleans: is the label among the k highest scores? k is capped at K classes.

    Ties are broken by class index (lower first), so results are deterministic.
    """
    scores = np.asarray(scores)
    labels = np.asarray(labels).astype(np.int64)
    k = min(k, scores.shape[1])
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return (order == labels[:, None]).any(axis=1)


def topk_accuracy(scores: np.ndarray, labels: np.ndarray, ks=TOPK) -> dict[int, float]:
    """{k: share of rows whose label is in the top k}; NaN for an empty input."""
    if len(labels) == 0:
        return {k: float("nan") for k in ks}
    return {k: float(topk_hits(scores, labels, k).mean()) for k in ks}


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax of `N K` logits."""
    logits = np.asarray(logits, dtype=np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


VIDEO_SCORES = ("official", "softmax")


def clip_scores(clip_logits: np.ndarray, rule: str = "official", arch: str = "") -> np.ndarray:
    """What is averaged per video: 'official' = the raw outputs of the official classifier
    (log-softmax for I3D, logits otherwise); 'softmax' = probabilities."""
    if rule == "softmax":
        return softmax(clip_logits)
    if rule != "official":
        raise ValueError(f"video score rule must be one of {VIDEO_SCORES}, got '{rule}'")
    return log_softmax(clip_logits) if arch == "i3d" else np.asarray(clip_logits, dtype=np.float64)


def video_scores(clip_values: np.ndarray, labels: np.ndarray, video_index: np.ndarray):
    """Average per-clip scores (`clip_scores`) per video.

    Args: clip_values `N K`, labels `N`, video_index `N` (clips of one video share it).
    Returns (video_ids `V`, scores `V K`, video_labels `V`, clips_per_video `V`),
    videos sorted by id. A video whose clips disagree on the label is an error.
    """
    probs = np.asarray(clip_values, dtype=np.float64)
    video_index = np.asarray(video_index).astype(np.int64)
    labels = np.asarray(labels).astype(np.int64)
    ids, inverse, counts = np.unique(video_index, return_inverse=True, return_counts=True)
    sums = np.zeros((len(ids), probs.shape[1]), dtype=np.float64)
    np.add.at(sums, inverse, probs)
    video_labels = np.full(len(ids), -1, dtype=np.int64)
    video_labels[inverse] = labels
    if not np.array_equal(video_labels[inverse], labels):
        raise ValueError("clips of one video carry different labels")
    return ids, sums / counts[:, None], video_labels, counts


def multi_clip_metrics(
    clip_logits: np.ndarray,
    labels: np.ndarray,
    video_index: np.ndarray,
    ks=TOPK,
    rule: str = "official",
    arch: str = "",
) -> dict[str, float]:
    """clip_top{k} and video_top{k} (fractions in [0, 1]), plus the clip and video counts.
    The video score averages `clip_scores(clip_logits, rule, arch)` over each video's clips."""
    clip_logits = np.asarray(clip_logits)
    labels = np.asarray(labels)
    if len(labels) == 0:
        out = {f"clip_top{k}": float("nan") for k in ks}
        out.update({f"video_top{k}": float("nan") for k in ks})
        return {**out, "clips": 0, "videos": 0}
    clip_acc = topk_accuracy(clip_logits, labels, ks)
    _, scores, video_labels, _ = video_scores(clip_scores(clip_logits, rule, arch), labels, video_index)
    video_acc = topk_accuracy(scores, video_labels, ks)
    out = {f"clip_top{k}": clip_acc[k] for k in ks}
    out.update({f"video_top{k}": video_acc[k] for k in ks})
    out.update({"clips": int(len(labels)), "videos": int(len(video_labels))})
    return out
