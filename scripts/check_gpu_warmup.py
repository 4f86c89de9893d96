"""What a camera's first window waits for on a GPU, with and without the analyzer's warm-up.

    python scripts/check_gpu_warmup.py --device cuda [--kv-cache dynamic static] [--windows 5]

`streampii watch rtsp://...` on CUDA warms the model up before it opens the cameras
(``QwenAnalyzer.warm_up``): a camera's frames arrive in real time and those that arrive while
the first window waits are dropped. Each case runs in a fresh process (CUDA's start-up and
torch.compile's caches are per process): load the real-size Qwen2-VL-2B folder of
scripts/check_gpu_watch.py (random weights), warm up or not, then analyze windows of the clip
one at a time, as a camera's are. Prints, for each cache: the load, the warm-up, the first
window's seconds and the median of the next ones. Without a warm-up the first window pays the
start-up (and the static cache's compile) while the camera's frames wait.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_qwen import DEFAULT_CLIP, sample_windows  # noqa: E402
from check_gpu_watch import build_model_folder  # noqa: E402


def child(model: str, device: str, cache: str, warm: bool, clip: Path, count: int, new_tokens: int) -> dict:
    """One case, in this process: seconds to load, to warm up, and of each window."""
    import torch

    from streampii.analyzers.qwen import load_qwen2vl
    from streampii.sampler import SamplerOptions
    from streampii.windows import WindowOptions

    sampler, windows_options = SamplerOptions(), WindowOptions()
    windows = sample_windows(clip, sampler, windows_options)[:count]
    started = time.perf_counter()
    analyzer = load_qwen2vl(model, device, batch_size=1, max_new_tokens=new_tokens, kv_cache=cache)
    loaded = time.perf_counter() - started
    warm_up = None
    if warm:
        warm_up = analyzer.warm_up(windows_options.frame_counts(sampler.fps)[0], sampler.max_pixels)
    each = []
    for window in windows:
        started = time.perf_counter()
        analyzer.analyze([window])
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        each.append(time.perf_counter() - started)
    return {"load": loaded, "warm_up": warm_up, "windows": each, "kv_cache": analyzer.describe()["kv_cache"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--clip", type=Path, default=DEFAULT_CLIP)
    parser.add_argument("--kv-cache", nargs="+", choices=["dynamic", "static"], default=["dynamic", "static"])
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--max-new-tokens", type=int, default=64, help="random weights never stop: bound answers")
    parser.add_argument("--layers", type=int, help="debugging only: keep this many text and vision layers")
    parser.add_argument("--model", help="the model folder: built there unless it holds one (default: temp)")
    parser.add_argument("--child", nargs=2, metavar=("CACHE", "WARM"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        cache, warm = args.child
        result = child(args.model, args.device, cache, warm == "1", args.clip, args.windows, args.max_new_tokens)
        print(json.dumps(result))
        return 0

    model = Path(args.model or Path(tempfile.mkdtemp()) / "qwen2-vl-2b")
    if not (model / "config.json").is_file():
        build_model_folder(model, args.device, args.layers)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    for cache in args.kv_cache:
        for warm in (False, True):
            command = [sys.executable, __file__, "--child", cache, "1" if warm else "0", "--model", str(model)]
            command += ["--device", args.device, "--clip", str(args.clip), "--windows", str(args.windows)]
            command += ["--max-new-tokens", str(args.max_new_tokens)]
            done = subprocess.run(command, capture_output=True, text=True, env=env)
            if done.returncode != 0:
                print(f"{cache}, warm-up {warm}: failed ({done.returncode}):\n{done.stderr[-3000:]}", flush=True)
                continue
            r = json.loads(done.stdout.strip().splitlines()[-1])
            first, rest = r["windows"][0], sorted(r["windows"][1:])
            median = rest[len(rest) // 2] if rest else float("nan")
            warmed = f"warm-up {r['warm_up']:.1f} s" if warm else "no warm-up"
            print(
                f"--kv-cache {cache} (ran {r['kv_cache']}): load {r['load']:.1f} s, {warmed}; "
                f"first window {first:.2f} s, then median {median:.2f} s "
                f"({', '.join(f'{s:.2f}' for s in r['windows'])})",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
