"""A picture of an agent's mood and emotions over time: `emotion plot NAME` (a figure in a notebook, a PNG
with --out). Drawn with Pillow (a dependency, 22 MB): no plotting library to install.

Between two recorded changes the mood is drawn as it decays (its half-life), so recovery shows as the
curve it is; each emotion is a mark where it arose, as high as its intensity, labelled with its name.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from tobio.commands import Result
from tobio.emotion.affect import DIMENSIONS, Affect, Mood
from tobio.emotion.emotions import Emotion

COLOURS = {"pleasure": (46, 125, 50), "arousal": (230, 81, 0), "dominance": (21, 101, 192)}
WIDTH, HEIGHT, MARGIN = 800, 360, 44
POINTS = 400  # samples along the time axis
LABEL_GAP = 80  # pixels between two labels of the same emotion


@dataclass(frozen=True)
class Trace:
    """The mood sampled over time, and the emotions that arose."""

    times: list[datetime]
    affects: list[Affect]
    emotions: list[Emotion]


def trace(moods: Sequence[Mood], half_life_s: float, emotion_half_life_s: float, until: datetime | None = None) -> Trace:
    """Sample the mood from the first record to `until` (the last record by default), decaying each record
    to the sample's time; the emotions are those the records hold when they first appear."""
    if not moods:
        return Trace([], [], [])
    start, end = moods[0].at, max(until or moods[-1].at, moods[-1].at)
    span = max((end - start).total_seconds(), 1.0)
    times = [start + timedelta(seconds=span * i / (POINTS - 1)) for i in range(POINTS)]
    affects, j = [], 0
    for when in times:
        while j + 1 < len(moods) and moods[j + 1].at <= when:
            j += 1
        affects.append(moods[j].at_time(when, half_life_s, emotion_half_life_s).affect)
    seen: dict[tuple[str, str, datetime], Emotion] = {}
    for mood in moods:  # an emotion is recorded again (decayed) in later states: keep it as it arose
        for emotion in mood.emotions:
            key = (emotion.name, emotion.cause, emotion.since)
            if key not in seen or emotion.intensity > seen[key].intensity:
                seen[key] = emotion
    return Trace(times, affects, list(seen.values()))


def png(data: Trace, title: str) -> bytes:
    """The trace as a PNG: P, A, D lines in [-1, 1] over time, emotions as marks labelled with their names."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    left, right, top, bottom = MARGIN, WIDTH - 16, 28, HEIGHT - MARGIN
    draw.text((left, 6), title, fill="black", font=font)
    if not data.times:
        draw.text((left, HEIGHT // 2), "no recorded mood yet", fill="gray", font=font)
        return _encode(image)
    start, end = data.times[0], data.times[-1]
    span = max((end - start).total_seconds(), 1.0)

    def x(when: datetime) -> float:
        return left + (right - left) * (when - start).total_seconds() / span

    def y(value: float) -> float:
        return top + (bottom - top) * (1 - (value + 1) / 2)

    for level in (-1.0, -0.5, 0.0, 0.5, 1.0):
        draw.line([(left, y(level)), (right, y(level))], fill=(200, 200, 200) if level else (150, 150, 150), width=1)
        draw.text((4, y(level) - 6), f"{level:+.1f}", fill="gray", font=font)
    draw.text((left, bottom + 6), f"{start:%Y-%m-%d %H:%M:%S}", fill="gray", font=font)
    draw.text((right - 110, bottom + 6), f"{end:%Y-%m-%d %H:%M:%S}", fill="gray", font=font)
    for k, name in enumerate(DIMENSIONS):
        points = [(x(t), y(getattr(a, name))) for t, a in zip(data.times, data.affects)]
        draw.line(points, fill=COLOURS[name], width=2)
        draw.text((left + 8 + 90 * k, bottom + 22), name, fill=COLOURS[name], font=font)
    last_label: tuple[str, float] = ("", -1e9)
    for emotion in sorted(data.emotions, key=lambda e: e.since):
        px, py = x(max(start, min(end, emotion.since))), y(emotion.intensity)
        r = 2 + 4 * emotion.intensity
        draw.ellipse([px - r, py - r, px + r, py + r], outline=(120, 0, 120), width=1)
        if emotion.name != last_label[0] or px - last_label[1] > LABEL_GAP:  # a run of one emotion is named once
            draw.text((px + r + 1, py - 14), emotion.name, fill=(120, 0, 120), font=font)
            last_label = (emotion.name, px)
    return _encode(image)


def _encode(image: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass
class Figure(Result):
    """A Result that is a picture in a notebook (its PNG inline) and a line of text elsewhere."""

    image: bytes = field(default=b"", repr=False)

    def _repr_png_(self) -> bytes:
        return self.image

    def _repr_html_(self) -> str:
        encoded = base64.b64encode(self.image).decode("ascii")
        alt = html.escape(self.text or "mood", quote=True)
        return f'<img src="data:image/png;base64,{encoded}" alt="{alt}" style="max-width:100%"/>'
