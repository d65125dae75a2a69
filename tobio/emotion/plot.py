"""A picture of an agent's mood and emotions over time: `emotion plot NAME` (a figure in a notebook, an SVG
file with --out, the web page's sidebar). Written as SVG text with the standard library: no plotting or
imaging library to install.

Between two recorded changes the mood is drawn as it decays (its half-life), so recovery shows as the
curve it is; each emotion is a mark where it arose, as high as its intensity, labelled with its name.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from tobio.commands import Result
from tobio.emotion.affect import DIMENSIONS, Affect, Mood
from tobio.emotion.emotions import Emotion

COLOURS = {"pleasure": "#2e7d32", "arousal": "#e65100", "dominance": "#1565c0"}
EMOTION_COLOUR, GRID, AXIS, MUTED = "#780078", "#c8c8c8", "#969696", "#808080"
WIDTH, HEIGHT, MARGIN = 800, 360, 44
MAX_LABEL = 200  # characters of a name or cause shown: they come from agents and imported cards
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


_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _text(value: str) -> str:
    """`value` as SVG text or an attribute: capped, the characters XML forbids dropped, markup escaped (it
    comes from agents and imported cards, so `<script>` stays four letters in brackets)."""
    return html.escape(_NOT_XML.sub("", value[:MAX_LABEL]), quote=True)


def _label(x: float, y: float, text: str, colour: str, anchor: str = "start") -> str:
    end = f' text-anchor="{anchor}"' if anchor != "start" else ""
    return f'<text x="{x:.1f}" y="{y:.1f}" fill="{colour}"{end}>{_text(text)}</text>'


def svg(data: Trace, title: str) -> str:
    """The trace as an SVG: P, A, D lines in [-1, 1] over time, emotions as circles (as large and as high as
    their intensity) labelled with their names. Fixed viewBox, so it scales to any width."""
    left, right, top, bottom = MARGIN, WIDTH - 16, 28, HEIGHT - MARGIN
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
             'style="max-width:100%;height:auto" font-family="sans-serif" font-size="11" role="img">',
             f"<title>{_text(title)}</title>", f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
             _label(left, 18, title, "black")]
    if not data.times:
        parts.append(_label(left, HEIGHT / 2, "no recorded mood yet", MUTED))
        return "\n".join([*parts, "</svg>"])
    start, end = data.times[0], data.times[-1]
    span = max((end - start).total_seconds(), 1.0)

    def x(when: datetime) -> float:
        return left + (right - left) * (when - start).total_seconds() / span

    def y(value: float) -> float:
        return top + (bottom - top) * (1 - (max(-1.0, min(1.0, value)) + 1) / 2)

    for level in (-1.0, -0.5, 0.0, 0.5, 1.0):
        parts.append(f'<line x1="{left}" y1="{y(level):.1f}" x2="{right}" y2="{y(level):.1f}" '
                     f'stroke="{GRID if level else AXIS}"/>')
        parts.append(_label(4, y(level) + 4, f"{level:+.1f}", MUTED))
    parts.append(_label(left, bottom + 16, f"{start:%Y-%m-%d %H:%M:%S}", MUTED))
    parts.append(_label(right, bottom + 16, f"{end:%Y-%m-%d %H:%M:%S}", MUTED, anchor="end"))
    for k, name in enumerate(DIMENSIONS):
        points = " ".join(f"{x(t):.1f},{y(getattr(a, name)):.1f}" for t, a in zip(data.times, data.affects))
        parts.append(f'<polyline class="{name}" points="{points}" fill="none" stroke="{COLOURS[name]}" stroke-width="2"/>')
        legend = left + 8 + 90 * k
        parts.append(f'<line x1="{legend}" y1="{bottom + 29}" x2="{legend + 14}" y2="{bottom + 29}" '
                     f'stroke="{COLOURS[name]}" stroke-width="2"/>')
        parts.append(_label(legend + 18, bottom + 33, name, COLOURS[name]))
    last_label: tuple[str, float] = ("", -1e9)
    for emotion in sorted(data.emotions, key=lambda e: e.since):
        px, py = x(max(start, min(end, emotion.since))), y(emotion.intensity)
        r = 2 + 4 * max(0.0, min(1.0, emotion.intensity))
        about = f"{emotion.name} {emotion.intensity:.2f}: {emotion.cause}"
        parts.append(f'<circle class="emotion" cx="{px:.1f}" cy="{py:.1f}" r="{r:.1f}" fill="none" '
                     f'stroke="{EMOTION_COLOUR}"><title>{_text(about)}</title></circle>')
        if emotion.name != last_label[0] or px - last_label[1] > LABEL_GAP:  # a run of one emotion is named once
            near_end = px > right - LABEL_GAP  # named to its left there, so the name stays on the picture
            parts.append(_label(px - r - 1 if near_end else px + r + 1, py - 4, emotion.name, EMOTION_COLOUR,
                                anchor="end" if near_end else "start"))
            last_label = (emotion.name, px)
    return "\n".join([*parts, "</svg>"])


@dataclass
class Figure(Result):
    """A Result that is a picture in a notebook (its SVG) and a line of text elsewhere."""

    svg: str = field(default="", repr=False)

    def _repr_svg_(self) -> str:
        return self.svg

    def _repr_html_(self) -> str:
        """An <img> of the SVG, not the SVG inline: an image cannot run script or reach the notebook's page."""
        encoded = base64.b64encode(self.svg.encode("utf-8")).decode("ascii")
        alt = html.escape(self.text or "mood", quote=True)
        return f'<img src="data:image/svg+xml;base64,{encoded}" alt="{alt}" style="max-width:100%;height:auto"/>'
