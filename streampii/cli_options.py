"""Command-line options that `watch` and `segments` share, declared once so both say the same."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from streampii.analyzers.qwen import KV_CACHES
from streampii.gate import GATE_MODES
from streampii.masks import MODES, SHAPES
from streampii.pipeline import GPU_BATCH

SAMPLING, VLM_PANEL, BLUR = "Sampling and windows", "VLM", "Blur"

# choices typer shows and checks, taken from the stages that own them
VLM = StrEnum("VLM", [("auto", "auto"), ("qwen2_vl", "qwen2-vl"), ("off", "off")])
KVCache = StrEnum("KVCache", [(c, c) for c in KV_CACHES])
MaskMode = StrEnum("MaskMode", [(m, m) for m in MODES])
MaskShape = StrEnum("MaskShape", [(m, m) for m in SHAPES])
GateMode = StrEnum("GateMode", [(m, m) for m in GATE_MODES])

Fps = Annotated[
    float,
    typer.Option(help="Frames sampled per second of video (by presentation timestamp).", rich_help_panel=SAMPLING),
]
MaxPixels = Annotated[
    int,
    typer.Option(
        help="Pixel budget per sampled frame; frames are resized to multiples of 28 within it.",
        rich_help_panel=SAMPLING,
    ),
]
WindowSeconds = Annotated[
    float,
    typer.Option(
        help="Seconds of video per VLM window (at most 768 frames: --window x --fps).", rich_help_panel=SAMPLING
    ),
]
Stride = Annotated[
    float,
    typer.Option(help="Seconds between window starts (below --window: windows overlap).", rich_help_panel=SAMPLING),
]
VlmChoice = Annotated[
    VLM,
    typer.Option(
        help="auto: Qwen2-VL when a CUDA GPU is present or the weights are local, else the detectors alone;"
        " qwen2-vl: insist; off: no VLM (and no detectors without --blur).",
        rich_help_panel=VLM_PANEL,
    ),
]
Model = Annotated[
    str,
    typer.Option(
        help="Qwen2-VL hub id or local folder (Qwen/Qwen2-VL-2B-Instruct for small GPUs).", rich_help_panel=VLM_PANEL
    ),
]
Device = Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.", rich_help_panel=VLM_PANEL)]
BatchSize = Annotated[
    int | None,
    typer.Option(
        min=1,
        help=f"Windows per VLM generate call, up to 256"
        f" (default: {GPU_BATCH} for files on a CUDA GPU without --blur, else 1).",
        show_default=False,
        rich_help_panel=VLM_PANEL,
    ),
]
KvCacheChoice = Annotated[
    KVCache,
    typer.Option(
        help="static: a preallocated KV cache, with which generate compiles its decoding step on CUDA: about 3"
        " times faster answers after a compile of about 25 s per batch size; for cameras and long runs.",
        rich_help_panel=VLM_PANEL,
    ),
]
Gate = Annotated[
    GateMode,
    typer.Option(
        help="Which windows the VLM sees. detect: those with motion or a face/text the detectors see; "
        "motion: those with motion; off: all.",
        rich_help_panel=VLM_PANEL,
    ),
]
Blur = Annotated[
    bool,
    typer.Option("--blur/--no-blur", help="Also write <stem>.redacted.mp4 with PII blurred.", rich_help_panel=BLUR),
]
Detect = Annotated[
    str,
    typer.Option(
        help="What the detectors localize on every frame (with --blur, or alone without a VLM): face, plate, text"
        " (comma list).",
        rich_help_panel=BLUR,
    ),
]
