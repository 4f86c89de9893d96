"""The gate inside `watch`: idle windows skip the VLM and are counted; active ones are analysed."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import pytest
from videos import write_video

from streampii.analyzers import WindowResult
from streampii.gate import GateOptions
from streampii.pipeline import WatchOptions, stage_models, watch
from streampii.windows import Window, WindowOptions

ACTIVE = (12.0, 16.0)  # seconds in which a figure crosses the scene


class CountingAnalyzer:
    name = "counting-vlm"

    def __init__(self) -> None:
        self.seen: list[tuple[float, float]] = []

    def analyze(self, windows: Sequence[Window]) -> list[WindowResult]:
        self.seen.extend((w.start, w.end) for w in windows)
        return [WindowResult(w, [], self.name, visual_tokens=1) for w in windows]

    def describe(self) -> dict:
        return {"analyzer": self.name}


@pytest.fixture(scope="module")
def corridor(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    scene = cv2.resize(rng.uniform(40, 200, (9, 16, 3)).astype(np.float32), (320, 180)).astype(np.uint8)

    def draw(i: int, t: float) -> np.ndarray:
        image = scene.copy()
        if ACTIVE[0] <= t <= ACTIVE[1]:
            x = int(20 + (t - ACTIVE[0]) * 60)
            image[60:140, x : x + 40] = (20, 20, 30)
        return image

    return write_video(tmp_path_factory.mktemp("gate") / "corridor.mp4", [i / 5 for i in range(150)], draw=draw)


@pytest.mark.parametrize("mode", ["motion", "off"])
def test_idle_windows_skip_the_vlm_and_are_counted(corridor: Path, tmp_path: Path, mode: str) -> None:
    analyzer = CountingAnalyzer()
    options = WatchOptions(out=tmp_path, windows=WindowOptions(window=4, stride=2), gate=GateOptions(mode=mode))
    result = watch(str(corridor), options, [analyzer])
    assert result.state == "complete"
    manifest = json.loads((tmp_path / "corridor.manifest.json").read_text())
    counts, rows = manifest["counts"], manifest["windows"]
    assert counts["windows_total"] == len(rows) == result.windows
    assert manifest["gate"]["mode"] == mode
    if mode == "off":
        assert counts["windows_skipped"] == 0 and len(analyzer.seen) == len(rows)
        return
    skipped = [r for r in rows if r["status"] == "skipped"]
    assert counts["windows_skipped"] == len(skipped) >= len(rows) // 2
    assert counts["windows_analyzed"] == len(analyzer.seen) == len(rows) - len(skipped)
    assert all(r["gate"] == "idle" for r in skipped)
    # every window that overlaps the active stretch went to the VLM
    for r in rows:
        if r["start"] <= ACTIVE[1] and r["end"] >= ACTIVE[0]:
            assert r["status"] == "analyzed", r
    assert rows[0]["gate"] == "first window"
    assert "gate" in manifest["timings"]["stages"]


def test_skipped_windows_do_not_pile_up_behind_a_batch() -> None:
    """An idle stretch must not wait in memory (nor hold back events and blurred frames) until
    enough windows to analyse fill a batch."""
    from streampii.gate import GateDecision
    from streampii.pipeline import _batches

    def decided(pattern: str):
        for c in pattern:
            yield None, GateDecision(None, c == "A", "x", 0.0)

    sizes = [len(b) for b in _batches(decided("S" * 10), 4)]
    assert sizes == [1] * 10  # nothing to analyse: each skipped window goes at once
    batches = list(_batches(decided("A" + "S" * 30 + "AAA"), 4))
    assert max(len(b) for b in batches) <= 16 and sum(len(b) for b in batches) == 34
    assert [d.analyze for b in batches for _, d in b] == [c == "A" for c in "A" + "S" * 30 + "AAA"]
    assert [len(b) for b in _batches(decided("AAAA" + "AAAA"), 4)] == [4, 4]


def test_inputs_that_share_a_gate_count_their_own_windows(corridor: Path, tmp_path: Path) -> None:
    """A command's inputs reuse one gate, with its detectors (``stage_models``): each input's
    manifest still counts its own windows and detector runs, from nothing."""
    options = WatchOptions(out=tmp_path, windows=WindowOptions(window=4, stride=2), gate=GateOptions(mode="detect"))
    models = stage_models(options)
    manifests = []
    for n in range(2):
        analyzer = CountingAnalyzer()
        result = watch(str(corridor), options, [analyzer], stem=f"corridor{n}", models=models)
        assert result.state == "complete"
        manifests.append(json.loads((tmp_path / f"corridor{n}.manifest.json").read_text()))
    assert models.built == 1
    first, second = manifests
    assert first["gate"]["detector_runs"] > 0
    assert first["gate"] == second["gate"] and first["counts"] == second["counts"]
    assert [r["status"] for r in first["windows"]] == [r["status"] for r in second["windows"]]
