"""The bar chart draws every label inside its image."""

from __future__ import annotations

import numpy as np

from fame_ray.eval.chart import grouped_bars


def test_a_long_series_label_is_drawn_whole_inside_the_image():
    long_name = "Background Erasing (as released), a label longer than the default legend"
    groups = {"base": {"MoCo": (0.5, 0.1), long_name: (0.7, 0.05)}}
    image = np.asarray(grouped_bars(groups, "title", {"chance": 0.125}, width=1000, height=330))
    white = (image == 255).all(axis=2)
    # Nothing runs into the right edge: the last columns are blank, and the legend's text is drawn.
    assert white[:, -8:].all()
    legend_text = ~white[:, 1000 - 300 :]
    assert legend_text.any()
    # The plot keeps most of the width.
    assert (~white[:, :500]).any()
