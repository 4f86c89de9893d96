"""Qwen2-VL throughput at real size: prefill seconds, decode tokens/s, windows/s, real-time factor.

    python scripts/bench_qwen.py --model-size 2b --device cpu --batch 1 --windows 1 --new-tokens 8
    python scripts/bench_qwen.py --model-size 7b --device cuda --batch 1 4 8 16 --new-tokens 64

The model is Qwen2-VL-2B- or -7B-Instruct built from the published config with RANDOM
weights: speed does not depend on the weights, and no weights can be downloaded here. The
inputs are real: 8-frame windows sampled from a real clip by streampii's own sampler and
windowing (frames on the 28-px grid, 720 visual tokens per window at the default
--max-pixels), pixels through transformers' Qwen2-VL video processor with resizing off (as
the analyzer does), and the analyzer's own prompt in the model card's chat template, left
padded as the analyzer batches. Every answer is forced to exactly --new-tokens tokens.

Text token counts are exact when a Qwen tokenizer is at hand: ``--tokenizer`` takes a local
Qwen2-VL folder (or a cached hub id), or the ``qwen.tiktoken`` BPE ranks that the
``dashscope`` wheel ships (Qwen2 uses the same 151,643-token BPE). A Qwen2-VL tokenizer in
the Hugging Face cache, or an installed ``dashscope``, is found by itself. Without any, the
tiny tokenizer of scripts/make_tiny_qwen2vl.py encodes the text, which gives about twice the
real count, and the output says so.
"""

from __future__ import annotations

import argparse
import base64
import importlib.util
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from make_tiny_qwen2vl import CHAT_TEMPLATE, SPECIAL_TOKENS  # noqa: E402

from streampii.analyzers.prompt import build_messages  # noqa: E402
from streampii.sampler import SamplerOptions, needed_near_ticks, sample_frames  # noqa: E402
from streampii.source import decode_video, describe, open_video  # noqa: E402
from streampii.windows import Window, WindowOptions, sliding_windows  # noqa: E402

DEFAULT_CLIP = ROOT.parent / "shared" / "data" / "clips" / "intel_car-detection.mp4"

# config.json of Qwen/Qwen2-VL-2B-Instruct and Qwen/Qwen2-VL-7B-Instruct as published
# (transformers reads this flat form); the special token ids are Qwen2's.
_COMMON = {
    "architectures": ["Qwen2VLForConditionalGeneration"],
    "model_type": "qwen2_vl",
    "attention_dropout": 0.0,
    "bos_token_id": 151643,
    "eos_token_id": 151645,
    "vision_start_token_id": 151652,
    "vision_end_token_id": 151653,
    "vision_token_id": 151654,
    "image_token_id": 151655,
    "video_token_id": 151656,
    "hidden_act": "silu",
    "initializer_range": 0.02,
    "max_position_embeddings": 32768,
    "max_window_layers": 28,
    "num_hidden_layers": 28,
    "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0,
    "sliding_window": 32768,
    "use_cache": True,
    "use_sliding_window": False,
    "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
}
_VISION = {
    "depth": 32,
    "embed_dim": 1280,
    "mlp_ratio": 4,
    "num_heads": 16,
    "in_chans": 3,
    "patch_size": 14,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
}
PUBLISHED_CONFIGS = {
    "2b": {
        **_COMMON,
        "hidden_size": 1536,
        "intermediate_size": 8960,
        "num_attention_heads": 12,
        "num_key_value_heads": 2,
        "tie_word_embeddings": True,
        "vocab_size": 151936,
        "vision_config": {**_VISION, "hidden_size": 1536},
    },
    "7b": {
        **_COMMON,
        "hidden_size": 3584,
        "intermediate_size": 18944,
        "num_attention_heads": 28,
        "num_key_value_heads": 4,
        "tie_word_embeddings": False,
        "vocab_size": 152064,
        "vision_config": {**_VISION, "hidden_size": 3584},
    },
}
# Qwen2's special tokens follow its 151,643 BPE tokens, in the order of SPECIAL_TOKENS.
SPECIAL_IDS = {token: 151643 + i for i, token in enumerate(SPECIAL_TOKENS)}
VIDEO_PAD = "<|video_pad|>"
STOP_IDS = [SPECIAL_IDS["<|im_end|>"], SPECIAL_IDS["<|endoftext|>"]]
PAD_ID = SPECIAL_IDS["<|endoftext|>"]


# --------------------------------------------------------------------------- text tokens


class TiktokenRanks:
    """Qwen's byte-level BPE from a ``qwen.tiktoken`` ranks file, in plain Python (exact ids)."""

    exact = True

    def __init__(self, path: Path) -> None:
        import regex
        from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

        self.name = f"Qwen BPE ranks ({path})"
        self.ranks: dict[bytes, int] = {}
        for line in path.read_bytes().splitlines():
            if line.strip():
                token, rank = line.split()
                self.ranks[base64.b64decode(token)] = int(rank)
        self.pattern = regex.compile(PRETOKENIZE_REGEX)

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        for piece in self.pattern.findall(text):
            ids += self._merge(piece.encode("utf-8"))
        return ids

    def _merge(self, piece: bytes) -> list[int]:
        if piece in self.ranks:
            return [self.ranks[piece]]
        parts = [piece[i : i + 1] for i in range(len(piece))]
        while len(parts) > 1:  # merge the adjacent pair whose merged token has the lowest rank
            best = min(
                ((self.ranks.get(parts[i] + parts[i + 1]), i) for i in range(len(parts) - 1)),
                key=lambda r: float("inf") if r[0] is None else r[0],
            )
            if best[0] is None:
                break
            i = best[1]
            parts[i : i + 2] = [parts[i] + parts[i + 1]]
        return [self.ranks[p] for p in parts]


class HFTokenizer:
    """A transformers tokenizer: the real one from a Qwen2-VL folder, or the tiny one."""

    def __init__(self, tokenizer, name: str, exact: bool) -> None:
        self.tokenizer, self.name, self.exact = tokenizer, name, exact

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)


def text_tokenizer(choice: str | None, vocab_size: int):
    """``choice`` (a qwen.tiktoken file, a folder or a cached hub id), else the first found of: a
    cached Qwen2-VL tokenizer, dashscope's qwen.tiktoken, the tiny tokenizer (about 2x too many)."""
    from transformers import AutoTokenizer

    if choice and choice.endswith(".tiktoken"):
        return TiktokenRanks(Path(choice))
    if choice:
        return HFTokenizer(AutoTokenizer.from_pretrained(choice, local_files_only=True), choice, exact=True)
    for cached in ("Qwen/Qwen2-VL-7B-Instruct", "Qwen/Qwen2-VL-2B-Instruct"):
        try:
            return HFTokenizer(AutoTokenizer.from_pretrained(cached, local_files_only=True), cached, exact=True)
        except (OSError, ValueError):
            pass
    spec = importlib.util.find_spec("dashscope")
    if spec is not None and spec.origin:
        ranks = Path(spec.origin).parent / "resources" / "qwen.tiktoken"
        if ranks.is_file():
            return TiktokenRanks(ranks)
    from make_tiny_qwen2vl import build_tiny_qwen2vl

    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = AutoTokenizer.from_pretrained(build_tiny_qwen2vl(tmp))
    regular = [i for t, i in tokenizer.get_vocab().items() if t not in SPECIAL_IDS]
    assert max(regular) < vocab_size
    return HFTokenizer(tokenizer, "tiny BPE of make_tiny_qwen2vl.py (ESTIMATE: about 2x the real count)", exact=False)


def render_prompt(window: Window) -> str:
    """The analyzer's messages through the model card's chat template, as apply_chat_template does."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    return env.from_string(CHAT_TEMPLATE).render(messages=build_messages(window), add_generation_prompt=True)


def prompt_ids(window: Window, visual: int, tokenizer) -> tuple[list[int], list[int], int]:
    """(input ids, mm token types, text tokens): special tokens by their Qwen2 ids, the video
    placeholder expanded to ``visual`` video tokens (type 2), the rest encoded as text."""
    import re

    specials = "|".join(re.escape(t) for t in SPECIAL_TOKENS)
    ids: list[int] = []
    types: list[int] = []
    text = 0
    for part in re.split(f"({specials})", render_prompt(window)):
        if part == VIDEO_PAD:
            ids += [SPECIAL_IDS[VIDEO_PAD]] * visual
            types += [2] * visual
        elif part in SPECIAL_IDS:
            ids.append(SPECIAL_IDS[part])
            types.append(0)
            text += 1
        elif part:
            encoded = tokenizer.encode(part)
            ids += encoded
            types += [0] * len(encoded)
            text += len(encoded)
    return ids, types, text


# --------------------------------------------------------------------------- inputs


def sample_windows(clip: Path, sampler: SamplerOptions, options: WindowOptions) -> list[Window]:
    """Full-length windows of the clip, through streampii's own decoder, sampler and windows."""
    container = open_video(str(clip))
    try:
        info = describe(container, str(clip))
        decoded = decode_video(container, info, needed=needed_near_ticks(sampler, info.fps))
        windows = list(sliding_windows(sample_frames(decoded, sampler), options, sampler.fps))
    finally:
        container.close()
    size, _ = options.frame_counts(sampler.fps)
    full = [w for w in windows if len(w.frames) == size]
    if not full:
        raise SystemExit(f"{clip}: shorter than one {options.window:g} s window")
    return full


class Inputs:
    """Builds one batch the way QwenAnalyzer does: video processor without resizing, left padding."""

    def __init__(self, tokenizer) -> None:
        from streampii._torchvision import ensure_torchvision

        ensure_torchvision()  # the video processor imports torchvision
        from transformers import Qwen2VLVideoProcessor

        self.video_processor = Qwen2VLVideoProcessor()  # patch 14, merge 2, temporal patch 2
        self.tokenizer = tokenizer

    def window(self, window: Window) -> dict:
        video = np.stack([f.image for f in window.frames])
        pixels = self.video_processor(
            videos=[video], do_resize=False, do_sample_frames=False, cap_pixels_per_frame=False, return_tensors="pt"
        )
        thw = pixels["video_grid_thw"][0]
        visual = int(thw.prod()) // self.video_processor.merge_size**2
        ids, types, text = prompt_ids(window, visual, self.tokenizer)
        return {
            "pixels": pixels["pixel_values_videos"],
            "thw": thw,
            "ids": ids,
            "types": types,
            "visual": visual,
            "text": text,
        }

    def batch(self, windows: list[Window], device: str, dtype) -> tuple[dict, list[dict]]:
        import torch

        parts = [self.window(w) for w in windows]
        length = max(len(p["ids"]) for p in parts)
        pad = [length - len(p["ids"]) for p in parts]
        inputs = {
            "input_ids": torch.tensor([[PAD_ID] * n + p["ids"] for n, p in zip(pad, parts, strict=True)]),
            "attention_mask": torch.tensor([[0] * n + [1] * len(p["ids"]) for n, p in zip(pad, parts, strict=True)]),
            "mm_token_type_ids": torch.tensor([[0] * n + p["types"] for n, p in zip(pad, parts, strict=True)]),
            "pixel_values_videos": torch.cat([p["pixels"] for p in parts]).to(dtype),
            "video_grid_thw": torch.stack([p["thw"] for p in parts]),
        }
        return {k: v.to(device) for k, v in inputs.items()}, parts


# --------------------------------------------------------------------------- model


def build_model(size: str, device: str, dtype, attention: str, layers: int | None = None, overrides=None):
    """Qwen2-VL from the published config (``overrides``: keys replaced) with random weights,
    straight onto ``device``."""
    from streampii._torchvision import ensure_torchvision

    ensure_torchvision()  # transformers' Qwen2-VL modules import torchvision
    import torch
    from transformers import GenerationConfig, Qwen2VLConfig, Qwen2VLForConditionalGeneration

    published = {**PUBLISHED_CONFIGS[size], **(overrides or {})}
    if layers:  # debugging only: the figures are then not the model's
        published["num_hidden_layers"] = layers
        published["vision_config"] = {**published["vision_config"], "depth": layers}
    config = Qwen2VLConfig.from_dict(published)
    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # older transformers: initialise normally (slower)
        from contextlib import nullcontext as no_init_weights
    with torch.device(device), no_init_weights():
        model = Qwen2VLForConditionalGeneration._from_config(config, dtype=dtype, attn_implementation=attention)
    _randomize(model)
    model.tie_weights()
    model.generation_config = GenerationConfig(
        bos_token_id=151643, eos_token_id=STOP_IDS, pad_token_id=PAD_ID, do_sample=False
    )
    return model.eval()


def _randomize(model, std: float = 0.02) -> None:
    """Fill the weights with N(0, std) values copied from one random pool (fast on any device);
    norm scales 1, biases 0. Values do not change speed as long as none is NaN or denormal."""
    import torch

    params = list(model.named_parameters())
    device, dtype = params[0][1].device, params[0][1].dtype
    generator = torch.Generator(device=device).manual_seed(0)
    pool = torch.randn(4_000_037, generator=generator, device=device).mul_(std).to(dtype)  # prime length
    with torch.no_grad():
        for name, p in params:
            if p.dim() == 1:
                p.fill_(0.0 if name.endswith("bias") else 1.0)
                continue
            flat = p.view(-1)
            offset = zlib.crc32(name.encode()) % pool.numel()
            for start in range(0, flat.numel(), pool.numel() - offset):
                n = min(flat.numel() - start, pool.numel() - offset)
                flat[start : start + n].copy_(pool[offset : offset + n])


# --------------------------------------------------------------------------- measurement


@dataclass
class Row:
    model: str
    device: str
    dtype: str
    attention: str
    batch: int
    visual_tokens: int  # per window
    text_tokens: int  # per window (longest in the batch)
    prep_s: float  # frames -> pixel patches and token ids, whole batch
    prefill_s: float  # vision encoder + prompt prefill, whole batch, to the first token
    decode_tok_s: float  # generated tokens per second, all rows of the batch together
    batch_s: float  # prep + generate, whole batch
    windows_per_s: float
    realtime: float  # seconds of video per wall second at the window stride
    peak_gib: float | None = None  # CUDA only
    note: str = ""


class _Stamps:
    """A logits processor that only records when each step's logits are ready."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.times: list[float] = []

    def __call__(self, input_ids, scores):
        _sync(self.device)
        self.times.append(time.perf_counter())
        return scores


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def run_batch(
    model, inputs: Inputs, windows: list[Window], device: str, new_tokens: int, cache: str = "dynamic"
) -> dict:
    import torch
    from transformers import LogitsProcessorList

    _sync(device)
    t0 = time.perf_counter()
    batch, parts = inputs.batch(windows, device, model.dtype)
    _sync(device)
    t1 = time.perf_counter()
    stamps = _Stamps(device)
    with torch.inference_mode():
        output = model.generate(
            **batch,
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,  # no early stop: every row generates exactly new_tokens
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
            logits_processor=LogitsProcessorList([stamps]),
            # "static": a preallocated KV cache, with which generate compiles the forward pass on CUDA
            **({"cache_implementation": "static"} if cache == "static" else {}),
        )
    _sync(device)
    t2 = time.perf_counter()
    generated = output.shape[1] - batch["input_ids"].shape[1]
    if generated != new_tokens:
        raise RuntimeError(f"generated {generated} tokens, {new_tokens} forced")
    steps = len(stamps.times) - 1
    decode = stamps.times[-1] - stamps.times[0]
    return {
        "prep": t1 - t0,
        "prefill": stamps.times[0] - t1,
        "decode_tok_s": len(windows) * steps / decode if steps and decode > 0 else float("nan"),
        "total": t2 - t0,
        "visual": parts[0]["visual"],
        "text": max(p["text"] for p in parts),
    }


def measure(
    model, inputs, windows, args, batch: int, stride: float, dtype: str, attention: str, cache: str = "dynamic"
) -> Row:
    import torch

    device = args.device
    picks = [windows[i % len(windows)] for i in range(batch)]  # reuse windows for large batches
    for _ in range(args.warmup):  # a static cache is sized by the answer's length: warm up with the same one
        run_batch(
            model, inputs, picks, device, args.new_tokens if cache == "static" else min(args.new_tokens, 4), cache
        )
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    runs = [run_batch(model, inputs, picks, device, args.new_tokens, cache) for _ in range(args.repeats)]
    median = {k: statistics.median(r[k] for r in runs) for k in ("prep", "prefill", "decode_tok_s", "total")}
    windows_per_s = batch / median["total"]
    return Row(
        model=f"Qwen2-VL-{args.model_size.upper()}",
        device=device,
        dtype=dtype,
        attention=attention + (", static cache" if cache == "static" else ""),
        batch=batch,
        visual_tokens=runs[0]["visual"],
        text_tokens=runs[0]["text"],
        prep_s=median["prep"],
        prefill_s=median["prefill"],
        decode_tok_s=median["decode_tok_s"],
        batch_s=median["total"],
        windows_per_s=windows_per_s,
        realtime=windows_per_s * stride,
        peak_gib=torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None,
    )


def _oom_row(args, batch: int, dtype: str, attention: str) -> Row:
    nan = float("nan")
    model = f"Qwen2-VL-{args.model_size.upper()}"
    return Row(model, args.device, dtype, attention, batch, 0, 0, nan, nan, nan, nan, nan, nan, note="out of memory")


# --------------------------------------------------------------------------- report


def machine(device: str) -> str:
    import torch
    import transformers

    if device.startswith("cuda"):
        what = f"{torch.cuda.get_device_name(device)}, CUDA {torch.version.cuda}"
    else:
        model = next(
            (line.split(":", 1)[1].strip() for line in _cpuinfo() if line.startswith("model name")), platform.machine()
        )
        threads = f"{torch.get_num_threads()} torch threads, {torch.backends.cpu.get_cpu_capability()}"
        what = f"CPU {model}, {os.cpu_count()} cores, {threads}"
    versions = f"torch {torch.__version__}, transformers {transformers.__version__}"
    return f"{what}; {versions}, Python {platform.python_version()}"


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


def table(rows: list[Row]) -> str:
    head = (
        "| model | device | dtype | attention | batch | tokens/window (visual+text) | prep s | prefill s "
        "| decode tok/s | s/batch | windows/s | x real time | peak GiB |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        if r.note:
            cells = [r.model, r.device, r.dtype, r.attention, str(r.batch), r.note] + ["-"] * 7
            lines.append("| " + " | ".join(cells) + " |")
            continue
        peak = f"{r.peak_gib:.1f}" if r.peak_gib is not None else "-"
        lines.append(
            f"| {r.model} | {r.device} | {r.dtype} | {r.attention} | {r.batch} | {r.visual_tokens}+{r.text_tokens} "
            f"| {r.prep_s:.2f} | {r.prefill_s:.2f} | {r.decode_tok_s:.2f} | {r.batch_s:.2f} "
            f"| {r.windows_per_s:.3f} | {r.realtime:.3f} | {peak} |"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-size", choices=sorted(PUBLISHED_CONFIGS), default="2b")
    parser.add_argument("--device", default="cuda" if _cuda() else "cpu", help="cuda, cuda:N or cpu")
    parser.add_argument("--batch", type=int, nargs="+", help="batch sizes (default: 1 4 8 16 on CUDA, 1 on CPU)")
    parser.add_argument(
        "--dtype", nargs="+", help="bfloat16 float16 float32 (default: bfloat16 on CUDA, float32 on CPU)"
    )
    parser.add_argument(
        "--attention",
        nargs="+",
        help="sdpa eager flash_attention_2 (default: sdpa, and flash_attention_2 if installed)",
    )
    parser.add_argument(
        "--cache",
        nargs="+",
        choices=["dynamic", "static"],
        default=["dynamic"],
        help="KV cache of generate (default dynamic, as the analyzer); static: generate compiles the forward on CUDA",
    )
    parser.add_argument("--new-tokens", type=int, default=64, help="tokens generated per window, forced (default 64)")
    parser.add_argument("--windows", type=int, default=4, help="distinct windows taken from the clip (default 4)")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per setting, median kept (CUDA 3, CPU 1)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed runs first (CUDA 1, CPU 0)")
    parser.add_argument("--clip", type=Path, default=DEFAULT_CLIP)
    parser.add_argument("--fps", type=float, default=SamplerOptions.fps)
    parser.add_argument("--max-pixels", type=int, default=SamplerOptions.max_pixels)
    parser.add_argument("--window", type=float, default=WindowOptions.window, help="seconds per window")
    parser.add_argument("--stride", type=float, default=WindowOptions.stride, help="seconds between window starts")
    parser.add_argument("--tokenizer", help="Qwen2-VL folder / cached hub id, or a qwen.tiktoken file (exact text ids)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--layers", type=int, help="debugging only: keep this many text and vision layers")
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)

    import torch

    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: no CUDA GPU is available (torch {torch.__version__})")
    if args.threads:
        torch.set_num_threads(args.threads)
    batches = args.batch or ([1, 4, 8, 16] if cuda else [1])
    dtypes = args.dtype or (["bfloat16"] if cuda else ["float32"])
    attentions = args.attention or (
        ["sdpa", "flash_attention_2"] if cuda and importlib.util.find_spec("flash_attn") else ["sdpa"]
    )
    args.repeats = args.repeats or (3 if cuda else 1)
    args.warmup = args.warmup if args.warmup is not None else (1 if cuda else 0)

    sampler = SamplerOptions(fps=args.fps, max_pixels=args.max_pixels)
    options = WindowOptions(window=args.window, stride=args.stride)
    windows = sample_windows(args.clip, sampler, options)[: args.windows]
    _, step = options.frame_counts(args.fps)
    stride = step / args.fps  # seconds of new video each window adds
    config = PUBLISHED_CONFIGS[args.model_size]
    tokenizer = text_tokenizer(args.tokenizer, config["vocab_size"])
    inputs = Inputs(tokenizer)
    frame = windows[0].frames[0].image
    print(f"machine: {machine(args.device)}")
    print(
        f"model: Qwen2-VL-{args.model_size.upper()} published config, random weights"
        + (f", {args.layers} layers (debug)" if args.layers else "")
    )
    print(
        f"input: {args.clip.name}, {len(windows)} windows of {len(windows[0].frames)} frames"
        f" {frame.shape[1]}x{frame.shape[0]}"
        f" (--fps {args.fps:g} --max-pixels {args.max_pixels} --window {args.window:g} --stride {args.stride:g});"
        f" {args.new_tokens} new tokens per window; median of {args.repeats} run(s) after {args.warmup} warm-up(s)"
    )
    print(f"text tokens: {tokenizer.name}")
    sys.stdout.flush()

    rows: list[Row] = []
    for dtype in dtypes:
        model = None
        for attention in attentions:
            started = time.perf_counter()
            try:
                if model is None:
                    model = build_model(args.model_size, args.device, getattr(torch, dtype), attention, args.layers)
                else:
                    model.set_attn_implementation(attention)
            except (ImportError, ValueError) as exc:
                print(f"skipping {dtype} {attention}: {str(exc).splitlines()[0]}", file=sys.stderr)
                continue
            params = sum(p.numel() for p in model.parameters())
            print(
                f"{dtype} {attention}: {params / 1e9:.2f} B parameters, built in {time.perf_counter() - started:.0f} s"
            )
            for cache, batch in ((c, b) for c in args.cache for b in batches):
                try:
                    row = measure(model, inputs, windows, args, batch, stride, dtype, attention, cache)
                except torch.cuda.OutOfMemoryError:
                    torch.cuda.empty_cache()
                    rows.append(_oom_row(args, batch, dtype, attention))
                    print(f"  batch {batch}: out of memory; larger batches skipped", flush=True)
                    break
                rows.append(row)
                print(
                    f"  {cache} cache, batch {batch}: prefill {row.prefill_s:.2f} s, "
                    f"decode {row.decode_tok_s:.2f} tok/s, {row.windows_per_s:.3f} windows/s, "
                    f"{row.realtime:.3f}x real time",
                    flush=True,
                )
        del model
        if cuda:
            torch.cuda.empty_cache()
    print()
    print(table(rows))
    if not tokenizer.exact:
        print(
            "\ntext tokens counted with the tiny tokenizer, about 2x the real count (594 real tokens for an"
            " 8-frame window's prompt): pass --tokenizer (see docs/performance.md) for exact counts"
        )
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=2))
    return 0


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


if __name__ == "__main__":
    sys.exit(main())
