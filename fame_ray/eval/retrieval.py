"""Video retrieval recall (docs/recipe.md, "Retrieval"), pure numpy.

Protocols (`PROTOCOLS`):
- 'official', as the official main_retrieve.py: each clip's feature is L2-normalised (its
  encoder ends in Normalize(2)), a video's feature is the mean of its clips'; the queries (test
  videos) and the gallery (training videos) are each centred on their OWN mean, then
  L2-normalised (its input normalisation is ImageNet's, applied where clips are encoded);
- 'gallery', fame-ray's option: raw clip features averaged, both sets centred on the gallery's
  mean, so no statistic of the test set is used.
Every test video queries the training videos by cosine similarity. R@k is the share of queries
for which ANY of the k nearest training videos shares the query's class (the rule of the
official code and of the video-retrieval papers it compares with).
"""

from __future__ import annotations

import numpy as np

RECALL_KS = (1, 5, 10, 20, 50)
PROTOCOLS = ("official", "gallery")


def l2_normalise(features: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    features = np.asarray(features, dtype=np.float64)
    return features / np.maximum(np.linalg.norm(features, axis=-1, keepdims=True), eps)


def average_by_video(features: np.ndarray, video_index: np.ndarray, labels: np.ndarray, normalise_clips: bool = False):
    """Mean clip feature per video: `N D` clip features -> (video_ids `V`, `V D`, labels `V`);
    each clip L2-normalised first when `normalise_clips` (the official protocol)."""
    features = l2_normalise(features) if normalise_clips else np.asarray(features, dtype=np.float64)
    video_index = np.asarray(video_index).astype(np.int64)
    ids, inverse, counts = np.unique(video_index, return_inverse=True, return_counts=True)
    sums = np.zeros((len(ids), features.shape[1]), dtype=np.float64)
    np.add.at(sums, inverse, features)
    video_labels = np.empty(len(ids), dtype=np.int64)
    video_labels[inverse] = np.asarray(labels).astype(np.int64)
    return ids, sums / counts[:, None], video_labels


def centre_and_normalise(gallery: np.ndarray, queries: np.ndarray, protocol: str = "official"):
    """Centre both sets ('official': each on its own mean; 'gallery': both on the gallery's),
    then L2-normalise each row."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"retrieval protocol must be one of {PROTOCOLS}, got '{protocol}'")
    gallery = np.asarray(gallery, dtype=np.float64)
    queries = np.asarray(queries, dtype=np.float64)
    gallery_mean = gallery.mean(axis=0, keepdims=True)
    query_mean = queries.mean(axis=0, keepdims=True) if protocol == "official" else gallery_mean
    return l2_normalise(gallery - gallery_mean), l2_normalise(queries - query_mean)


def recall_at_k(
    query_features: np.ndarray,
    query_labels: np.ndarray,
    gallery_features: np.ndarray,
    gallery_labels: np.ndarray,
    ks=RECALL_KS,
) -> dict[str, float]:
    """{'R@k': share of queries with a same-class video among their k nearest}.

    Features are compared by dot product (cosine after `centre_and_normalise`); k is
    capped at the gallery size. Ties are broken by gallery order.
    """
    query_labels = np.asarray(query_labels).astype(np.int64)
    gallery_labels = np.asarray(gallery_labels).astype(np.int64)
    if len(query_labels) == 0 or len(gallery_labels) == 0:
        return {f"R@{k}": float("nan") for k in ks}
    similarity = np.asarray(query_features) @ np.asarray(gallery_features).T
    order = np.argsort(-similarity, axis=1, kind="stable")
    same_class = gallery_labels[order] == query_labels[:, None]
    out = {}
    for k in ks:
        out[f"R@{k}"] = float(same_class[:, : min(k, len(gallery_labels))].any(axis=1).mean())
    return out


def retrieval_metrics(train: tuple, test: tuple, ks=RECALL_KS, protocol: str = "official") -> dict[str, float]:
    """The whole protocol from clip features.

    `train` and `test` are (clip_features `N D`, video_index `N`, labels `N`).
    Returns R@k plus the number of query and gallery videos.
    """
    official = protocol == "official"
    _, gallery, gallery_labels = average_by_video(train[0], train[1], train[2], normalise_clips=official)
    _, queries, query_labels = average_by_video(test[0], test[1], test[2], normalise_clips=official)
    gallery, queries = centre_and_normalise(gallery, queries, protocol)
    out = recall_at_k(queries, query_labels, gallery, gallery_labels, ks)
    out.update({"queries": int(len(query_labels)), "gallery": int(len(gallery_labels))})
    return out
