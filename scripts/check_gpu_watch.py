"""`streampii watch` itself with a real-size Qwen2-VL-2B (random weights) on a GPU.

    python scripts/check_gpu_watch.py --device cuda [--copies 8] [--runs 1/1 8/8] [--kv-cache dynamic static]

scripts/bench_qwen.py times the model alone; this runs the product's own path on the device:
the CLI, the analyzer's loading (dtype, attention), its batching of windows from several
inputs, and the pipeline around it. The model folder is Qwen2-VL-2B-Instruct's published
config with random weights, saved with the tiny tokenizer and processor of
scripts/make_tiny_qwen2vl.py (its special-token ids written into the config), so text is
counted with the tiny tokenizer and every answer is gibberish: windows end "failed" (no JSON
findings), which is expected. The input is one clip given ``--copies`` times (copies: `watch`
takes a file named twice, or through a symbolic link, once).
Each of ``--runs`` is BATCH/JOBS: ``--batch-size BATCH --jobs JOBS`` (with JOBS above 1 the
inputs run side by side and their windows share ``generate`` calls); each run is made with each
of ``--kv-cache`` in turn, so both caches are timed on the same machine. Prints, for each, the wall
time of the whole command (start-up and model loading included) and, with one job, the VLM
stage's seconds summed over the inputs' manifests (side by side, inputs wait for the same calls).

On a CPU it takes many minutes even with ``--layers 1`` (a debugging option: the figures are
then not the model's).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_qwen import DEFAULT_CLIP, build_model  # noqa: E402
from make_tiny_qwen2vl import build_tiny_qwen2vl  # noqa: E402

_TOKEN_IDS = ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")


def build_model_folder(folder: Path, device: str, layers: int | None = None, size: str = "2b") -> Path:
    """A loadable Qwen2-VL-2B (or ``size``) folder, random weights, token ids of the tiny tokenizer."""
    import torch
    from transformers import GenerationConfig

    tiny = build_tiny_qwen2vl(folder.parent / "tiny-qwen2vl")
    tiny_config = json.loads((tiny / "config.json").read_text())
    generation = json.loads((tiny / "generation_config.json").read_text())
    overrides = {key: tiny_config[key] for key in _TOKEN_IDS}
    overrides.update(bos_token_id=generation["bos_token_id"], eos_token_id=generation["eos_token_id"])
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    model = build_model(size, device, dtype, "sdpa", layers, overrides)
    ids = ("bos_token_id", "eos_token_id", "pad_token_id")
    model.generation_config = GenerationConfig(**{key: generation[key] for key in ids}, do_sample=False)
    model.save_pretrained(folder)
    for item in tiny.iterdir():  # tokenizer, processor, chat template
        if not (folder / item.name).exists():
            shutil.copy(item, folder / item.name)
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu")
    parser.add_argument("--clip", type=Path, default=DEFAULT_CLIP)
    parser.add_argument("--copies", type=int, default=8, help="inputs: the clip this many times")
    parser.add_argument("--runs", nargs="+", default=["1/1", "8/8"], help="BATCH/JOBS: --batch-size and --jobs")
    parser.add_argument(
        "--kv-cache", nargs="+", choices=["dynamic", "static"], default=["dynamic"], help="as watch's; each in turn"
    )
    parser.add_argument("--max-new-tokens", type=int, default=64, help="random weights never stop: bound answers")
    parser.add_argument("--layers", type=int, help="debugging only: keep this many text and vision layers")
    parser.add_argument("--out", type=Path, default=None, help="folder for the outputs (default: temp)")
    parser.add_argument("--model", type=Path, help="the model folder: built there unless it holds one (default: temp)")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="streampii-gpu-watch-"))
    out = args.out or work / "out"
    started = time.perf_counter()
    model = args.model or work / "qwen2-vl-2b-random"
    if not (model / "config.json").is_file():
        build_model_folder(model, args.device, args.layers)
    print(f"model folder ready in {time.perf_counter() - started:.0f} s", flush=True)
    inputs = []
    for i in range(args.copies):
        copy = work / f"cam{i}{args.clip.suffix}"
        shutil.copy(args.clip, copy)
        inputs.append(str(copy))
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    status = 0
    for run, cache in ((run, cache) for run in args.runs for cache in args.kv_cache):
        batch, jobs = (int(n) for n in run.split("/"))
        dest = out / f"batch-{batch}-jobs-{jobs}-{cache}"
        command = [sys.executable, "-m", "streampii", "watch", *inputs, "--vlm", "qwen2-vl", "--model", str(model)]
        command += ["--device", args.device, "--batch-size", str(batch), "--jobs", str(jobs)]
        command += ["--gate", "off", "--no-resume", "--kv-cache", cache]
        command += ["--max-new-tokens", str(args.max_new_tokens), "--out", str(dest)]
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, env=env)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            print(f"{run} {cache}: streampii failed ({done.returncode}):\n{done.stderr[-4000:]}", flush=True)
            status = 1
            continue
        manifests = [json.loads(p.read_text()) for p in sorted(dest.glob("*.manifest.json"))]
        if len(manifests) != len(inputs):
            print(f"{run} {cache}: {len(manifests)} manifests for {len(inputs)} inputs", flush=True)
            status = 1
        windows = sum(m["counts"]["windows_total"] for m in manifests)
        vlm = sum(m["timings"]["stages"].get("qwen2-vl", 0.0) for m in manifests)
        analyzer = manifests[0]["analyzers"][0]
        each = ", ".join(f"{m['timings']['stages'].get('qwen2-vl', 0.0):.1f}" for m in manifests)
        alone = (
            f"; VLM stage {vlm:.1f} s summed over the inputs ({each}) = {vlm / max(windows, 1):.2f} s a window"
            if jobs == 1
            else ""
        )
        failed = sum(m["counts"]["windows_failed"] for m in manifests)
        fallback = f" (asked for {cache}: {analyzer['kv_cache_error']})" if analyzer.get("kv_cache_error") else ""
        print(
            f"--batch-size {batch} --jobs {jobs}: {wall:.1f} s wall in all; {len(manifests)} inputs, {windows} windows"
            f" ({failed} failed, as random weights answer gibberish){alone};"
            f" analyzer on {analyzer['device']}, {analyzer['dtype']}, {analyzer['attention']},"
            f" {analyzer['kv_cache']} KV cache{fallback},"
            f" {analyzer['parameters'] / 1e9:.2f} B parameters",
            flush=True,
        )
    return status


if __name__ == "__main__":
    sys.exit(main())
