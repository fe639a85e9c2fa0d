"""Grouped bar charts as PNG, drawn with Pillow (no plotting library needed).

chart = grouped_bars({"motion": {"fame": (0.61, 0.02), "moco": (0.31, 0.04)}}, title="...")
chart.save("results.png")
"""

from __future__ import annotations

from PIL import Image, ImageDraw

# One colour per series, in order (colour-blind safe: Okabe-Ito).
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#999999"]


def grouped_bars(
    groups: dict[str, dict[str, tuple[float, float]]],
    title: str,
    references: dict[str, float] | None = None,
    width: int = 900,
    height: int = 480,
) -> Image.Image:
    """Bars of value in [0, 1] with a +-std whisker: one group per key of `groups`, one bar per
    series inside it; `references` draws labelled horizontal lines (e.g. chance, a ceiling)."""
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    series = list(dict.fromkeys(name for bars in groups.values() for name in bars))
    # The legend's column is as wide as its longest label (and the reference lines' labels).
    labels = [*series, *(f"{label} {value:.2f}" for label, value in (references or {}).items())]
    legend = max([draw.textlength(text) for text in labels] + [100.0])
    left, right, top, bottom = 60, width - int(legend) - 40, 40, height - 50

    def y_of(value: float) -> float:
        """The pixel row of a value in [0, 1] (clamped)."""
        return bottom - (bottom - top) * max(0.0, min(value, 1.0))

    draw.text((left, 12), title, fill="black")
    for tick in range(0, 11, 2):
        y = y_of(tick / 10)
        draw.line([(left - 4, y), (right, y)], fill="#DDDDDD")
        draw.text((left - 34, y - 6), f"{tick / 10:.1f}", fill="black")
    slot = (right - left) / max(len(groups), 1)
    bar = slot * 0.8 / max(len(series), 1)
    for index, (group, bars) in enumerate(groups.items()):
        x0 = left + index * slot + slot * 0.1
        for position, name in enumerate(series):
            if name not in bars:
                continue
            mean, std = bars[name]
            x = x0 + position * bar
            y = y_of(mean)
            draw.rectangle([x, y, x + bar * 0.9, bottom], fill=PALETTE[position % len(PALETTE)])
            for edge in (mean - std, mean + std):
                whisker = y_of(edge)
                draw.line([(x + bar * 0.2, whisker), (x + bar * 0.7, whisker)], fill="black")
            draw.line([(x + bar * 0.45, y_of(mean - std)), (x + bar * 0.45, y_of(mean + std))], fill="black")
        draw.text((x0, bottom + 8), group, fill="black")
    for offset, (label, value) in enumerate((references or {}).items()):
        y = y_of(value)
        draw.line([(left, y), (right, y)], fill="#555555", width=1)
        # Labels of nearby lines are staggered so that they do not overprint each other.
        draw.text((right + 6, y - 6 + 12 * offset), f"{label} {value:.2f}", fill="#555555")
    for position, name in enumerate(series):
        y = top + 20 * position
        draw.rectangle([right + 10, y, right + 24, y + 12], fill=PALETTE[position % len(PALETTE)])
        draw.text((right + 30, y), name, fill="black")
    return image
