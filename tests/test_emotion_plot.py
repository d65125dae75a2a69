"""`emotion plot`: the mood trace as an SVG (standard library only) that parses, holds the three lines and
the emotions, keeps hostile names as text, and is written only where the caller may write."""

from __future__ import annotations

import base64
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tobio.config.schema import KernelConfig
from tobio.emotion.affect import Affect, Mood
from tobio.emotion.emotions import Emotion
from tobio.emotion.module import EmotionModule
from tobio.emotion.plot import POINTS, Figure, Trace, svg, trace
from tobio.errors import CommandError, TobioError
from tobio.kernel import Kernel
from tobio.paths import data_dir

from conftest import write

NS = {"svg": "http://www.w3.org/2000/svg"}
T0 = datetime(2026, 1, 1, 12, 0, 0)
HOSTILE = '<script>alert("x")</script> & \x00\x1b'


def parsed(text: str) -> ET.Element:
    root = ET.fromstring(text)
    assert root.tag == "{http://www.w3.org/2000/svg}svg" and root.get("viewBox") == "0 0 800 360"
    return root


def lines(root: ET.Element) -> dict[str, list[tuple[float, float]]]:
    """Each polyline's points, by its dimension."""
    return {str(p.get("class")): [(float(x), float(y)) for x, y in (pair.split(",") for pair in str(p.get("points")).split())]
            for p in root.iterfind("svg:polyline", NS)}


def texts(root: ET.Element) -> list[str]:
    return [t.text or "" for t in root.iterfind("svg:text", NS)]


def moods() -> list[Mood]:
    """Pleasure falls to -0.8 with two emotions, then recovers toward 0 (half-life 60 s)."""
    calm = Affect(0.0, 0.0, 0.0)
    hurt = Affect(-0.8, 0.6, -0.4)
    felt = (Emotion("distress", 0.9, "ben: You are useless", T0 + timedelta(seconds=10)),
            Emotion(HOSTILE, 0.5, "ben: <img src=x onerror=alert(1)>", T0 + timedelta(seconds=10)))
    return [Mood(calm, calm, T0), Mood(hurt, calm, T0 + timedelta(seconds=10), felt)]


def test_svg_has_three_lines_over_time_in_range() -> None:
    drawn = trace(moods(), 60.0, 120.0, until=T0 + timedelta(seconds=300))
    root = parsed(svg(drawn, "ada: mood"))
    found = lines(root)
    assert set(found) == {"pleasure", "arousal", "dominance"}
    assert all(len(points) == POINTS for points in found.values())
    pleasure = [y for _, y in found["pleasure"]]
    xs = [x for x, _ in found["pleasure"]]
    assert xs == sorted(xs) and xs[0] < xs[-1]  # left to right over time
    zero = next(float(g.get("y1", 0)) for g in root.iterfind("svg:line", NS) if g.get("stroke") == "#969696")
    assert pleasure[0] == pytest.approx(zero)  # starts at 0 (the darker middle gridline)
    low = max(pleasure)  # the lowest point on the page: pleasure -0.8
    assert low > zero and pleasure[-1] < low  # fell below 0, then recovered toward it
    labels = texts(root)
    assert "ada: mood" in labels and {"pleasure", "arousal", "dominance"} <= set(labels)
    assert {"+1.0", "+0.5", "+0.0", "-0.5", "-1.0"} <= set(labels)
    assert "2026-01-01 12:00:00" in labels and "2026-01-01 12:05:00" in labels


def test_emotions_are_circles_with_their_names_kept_as_text() -> None:
    drawn = trace(moods(), 60.0, 120.0)
    text = svg(drawn, "<b>title</b> & co")
    root = parsed(text)  # the NUL and ESC in the name are dropped, or it would not parse
    circles = root.findall("svg:circle", NS)
    assert len(circles) == 2
    radii = {c.findtext("svg:title", "", NS).startswith("distress 0.90"): float(c.get("r", 0)) for c in circles}
    assert radii[True] > radii[False]  # distress is stronger than the other: a larger circle
    labels = texts(root)
    assert "distress" in labels and '<script>alert("x")</script> & ' in labels and "<b>title</b> & co" in labels
    causes = [c.findtext("svg:title", "", NS) for c in circles]
    assert any("<img src=x onerror=alert(1)>" in c for c in causes)
    assert not root.findall(".//svg:script", NS) and "<script" not in text and "<img" not in text and "<b>" not in text


def test_a_run_of_one_emotion_is_named_once() -> None:
    times = [T0 + timedelta(seconds=i) for i in range(POINTS)]
    calm = [Affect(0.0, 0.0, 0.0)] * POINTS
    near = [Emotion("joy", 0.5, "", T0 + timedelta(seconds=s)) for s in (10, 12, 14)]  # a few pixels apart
    far = Emotion("joy", 0.5, "", T0 + timedelta(seconds=300))  # far along: named again
    other = Emotion("fear", 0.5, "", T0 + timedelta(seconds=5))  # before the run: the far joy follows a joy
    root = parsed(svg(Trace(times, calm, [*near, other, far]), "t"))
    assert len(root.findall("svg:circle", NS)) == 5
    assert texts(root).count("joy") == 2 and texts(root).count("fear") == 1


def test_no_mood_yet_is_a_picture_that_says_so() -> None:
    root = parsed(svg(Trace([], [], []), "ada"))
    assert "no recorded mood yet" in texts(root) and not lines(root)


def test_figure_shows_as_svg_and_as_an_image() -> None:
    picture = svg(trace(moods(), 60.0, 120.0), "ada")
    figure = Figure(text='ada "quoted" <b>', svg=picture)
    assert figure._repr_svg_() == picture
    page = figure._repr_html_()
    found = re.fullmatch(r'<img src="data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)" alt="([^"<>]*)" [^<>]*/>', page)
    assert found, page
    assert base64.b64decode(found[1]).decode("utf-8") == picture and found[2] == "ada &quot;quoted&quot; &lt;b&gt;"
    assert figure.to_plain() == 'ada "quoted" <b>'


# --- the command ---------------------------------------------------------------------------------


@pytest.fixture
def kernel(duckdb_url: str, tmp_path: Path) -> Iterator[Kernel]:
    config = KernelConfig(modules=["scripted", "persona", "emotion"], settings={"emotion": {"half_life_s": 60.0}})
    k = Kernel(config, database=duckdb_url).start()
    try:
        agent = write(tmp_path / "ada.yaml", "name: ada\ntype: scripted\ncommands: [emotion]\n")
        k.run(f"agent spawn {agent}")
        module = k.modules.get(EmotionModule)
        assert module is not None
        ada = k.agents.get("ada")
        for mood in moods():
            module.set_mood(ada, mood)
            k.call(k.agents.save_state(ada))
        yield k
    finally:
        k.close()


def test_out_writes_the_svg(kernel: Kernel, tmp_path: Path) -> None:
    out = tmp_path / "mood.svg"
    result = kernel.run(f"emotion plot ada --out {out}")
    assert isinstance(result, Figure) and str(out) in (result.text or "")
    root = parsed(out.read_text("utf-8"))
    assert all(len(points) == POINTS for points in lines(root).values()) and len(lines(root)) == 3
    assert '<script>alert("x")</script> & ' in texts(root)
    assert out.read_text("utf-8") == result.svg
    again = kernel.run(f"emotion plot ada --out {out} --until {(T0 + timedelta(hours=1)).isoformat()}")
    assert out.read_text("utf-8") == again.svg != result.svg  # the person redraws over the old picture


@pytest.mark.parametrize("name", ["mood.png", "mood", "mood.svg.txt"])
def test_out_that_is_not_svg_is_one_line(kernel: Kernel, tmp_path: Path, name: str) -> None:
    with pytest.raises(CommandError) as info:
        kernel.run(f"emotion plot ada --out {tmp_path / name}")
    assert "\n" not in str(info.value) and ".svg" in str(info.value)
    assert list(tmp_path.glob("mood*")) == []
    assert ".svg" in kernel.run("help emotion plot").to_plain()


def test_an_agent_plots_only_inside_the_data_dir(kernel: Kernel, tmp_path: Path) -> None:
    outside = tmp_path / "outside.svg"
    with pytest.raises(TobioError, match="inside the data directory"):
        kernel.run(f"emotion plot ada --out {outside}", caller="ada")
    assert not outside.exists()
    kernel.run("emotion plot ada --out plots/ada.svg", caller="ada")
    inside = data_dir() / "plots" / "ada.svg"
    parsed(inside.read_text("utf-8"))
    with pytest.raises(TobioError):  # never over an existing file: that is the person's --force
        kernel.run("emotion plot ada --out plots/ada.svg", caller="ada")
