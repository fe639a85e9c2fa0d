"""Retrieval recall on hand-made features: averaging, centring, L2 norm, the any-of-top-k rule."""

import numpy as np
import pytest

from fame_ray.eval.retrieval import average_by_video, centre_and_normalise, recall_at_k, retrieval_metrics


def test_average_by_video():
    ids, features, labels = average_by_video(
        np.array([[1.0, 0.0], [3.0, 2.0], [5.0, 5.0]]), np.array([4, 4, 1]), np.array([2, 2, 0])
    )
    assert ids.tolist() == [1, 4]
    assert np.allclose(features, [[5.0, 5.0], [2.0, 1.0]])
    assert labels.tolist() == [0, 2]


def test_gallery_protocol_centres_both_on_the_gallery_mean_and_rows_get_unit_norm():
    gallery = np.array([[2.0, 0.0], [4.0, 0.0], [3.0, 3.0]])  # mean (3, 1)
    queries = np.array([[3.0, 1.0 + 2.0]])
    g, q = centre_and_normalise(gallery, queries, "gallery")
    assert np.allclose(np.linalg.norm(g, axis=1), 1.0)
    assert np.allclose(q, [[0.0, 1.0]])  # (3,3) - (3,1) = (0,2) -> (0,1)
    assert np.allclose(g[0], [-1 / np.sqrt(2), -1 / np.sqrt(2)])


def test_recall_any_of_top_k_shares_the_class():
    gallery = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-1.0, 0.0]])
    gallery_labels = np.array([0, 1, 2, 3])
    queries = np.array([[1.0, 0.0], [0.0, 1.0]])
    # query 0 ranks: g0 (1.0), g1 (0.8), g2 (0.0), g3 (-1) ; query 1 ranks: g2, g1, g0, g3
    query_labels = np.array([1, 3])
    recall = recall_at_k(queries, query_labels, gallery, gallery_labels, ks=(1, 2, 3, 4, 50))
    assert recall == {"R@1": 0.0, "R@2": 0.5, "R@3": 0.5, "R@4": 1.0, "R@50": 1.0}


def test_retrieval_metrics_end_to_end_with_two_clips_per_video():
    rng = np.random.default_rng(0)
    centres = np.eye(3) * 10 + 100.0  # a large common offset: centring must remove it

    def clips(labels):
        feats = np.concatenate([centres[labels] + rng.normal(0, 0.1, (len(labels), 3)) for _ in range(2)])
        videos = np.concatenate([np.arange(len(labels))] * 2)
        return feats, videos, np.concatenate([labels, labels])

    out = retrieval_metrics(clips(np.array([0, 1, 2, 0, 1, 2])), clips(np.array([2, 1, 0])))
    assert out["R@1"] == pytest.approx(1.0)
    assert (out["queries"], out["gallery"]) == (3, 6)


def test_centring_removes_a_common_offset_that_would_hide_the_classes():
    # uncentred, every vector points along (1,1,1); centred, the classes separate again
    offset = np.array([[100.0, 100.0, 100.0]])
    gallery = np.eye(3) + offset
    gallery_labels = np.array([0, 1, 2])
    g, q = centre_and_normalise(gallery, np.eye(3)[[1]] + offset, "gallery")
    assert recall_at_k(q, np.array([1]), g, gallery_labels, ks=(1,))["R@1"] == 1.0


def test_official_protocol_centres_queries_and_gallery_each_on_its_own_mean():
    """main_retrieve.py: query = query - query.mean(0); key = key - key.mean(0); then L2."""
    gallery = np.array([[2.0, 0.0], [4.0, 0.0], [3.0, 3.0]])  # mean (3, 1)
    queries = np.array([[1.0, 5.0], [3.0, 1.0]])  # mean (2, 3)
    g, q = centre_and_normalise(gallery, queries, "official")
    assert np.allclose(q, [[-1 / np.sqrt(5), 2 / np.sqrt(5)], [1 / np.sqrt(5), -2 / np.sqrt(5)]])
    assert np.allclose(g[2], [0.0, 1.0])


def test_official_protocol_normalises_each_clip_before_averaging():
    """A loud clip (large norm) does not drown a quiet one when clips are L2-normalised first."""
    clips = np.array([[100.0, 0.0], [0.0, 1.0]])
    _, raw, _ = average_by_video(clips, np.array([0, 0]), np.array([0, 0]))
    _, official, _ = average_by_video(clips, np.array([0, 0]), np.array([0, 0]), normalise_clips=True)
    assert np.allclose(raw, [[50.0, 0.5]]) and np.allclose(official, [[0.5, 0.5]])
