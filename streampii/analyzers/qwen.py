"""The Qwen2-VL analyzer: one video message per window, several windows per ``generate`` call.

Frames arrive already resized to the 28-pixel grid by the sampler, so the processor is told
not to resize again (``do_resize=False``): the visual tokens per window are then exactly
``frames / 2 * (H / 28) * (W / 28)``, which ``analyze`` checks for every window.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from streampii.analyzers import WindowResult
from streampii.analyzers.parse import UnparseableAnswer, parse_answer
from streampii.analyzers.prompt import build_messages
from streampii.errors import AnalyzerError
from streampii.sampler import GRID, Frame
from streampii.windows import Window

if TYPE_CHECKING:
    import torch  # imported when a model is loaded: it takes seconds

DEFAULT_MODEL = "Qwen/Qwen2-VL-7B-Instruct"
SMALL_MODEL = "Qwen/Qwen2-VL-2B-Instruct"  # for GPUs with less than ~20 GB
MAX_NEW_TOKENS = 512  # a window with a dozen findings fits; bounds a runaway answer
KV_CACHES = ("dynamic", "static")
_CACHE_STEP = 256  # a static cache's length is rounded up to this: windows of one run share one length
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
_STOP_TOKENS = ("<|im_end|>", "<|endoftext|>")
log = logging.getLogger("streampii.qwen")


def visual_tokens(frames: int, height: int, width: int) -> int:
    """Visual tokens Qwen2-VL spends on a window: frame pairs x (H/28) x (W/28)."""
    return (frames + frames % 2) // 2 * (height // GRID) * (width // GRID)


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a CUDA GPU is present, else ``cpu``."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise AnalyzerError(f"--device {device}: no CUDA GPU is available (torch {torch.__version__})")
    return device


def vlm_available(model: str = DEFAULT_MODEL, device: str = "auto") -> tuple[bool, str]:
    """Whether ``--vlm auto`` should use Qwen2-VL: a CUDA GPU is present, or the weights are
    already on disk (a folder, or the Hugging Face cache). Otherwise (False, why not)."""
    try:
        resolved = resolve_device(device)
    except AnalyzerError as exc:
        return False, str(exc)
    local = _local_weights(model)
    if local is not None:
        return True, f"{model}: weights found in {local}"
    if Path(model).expanduser().exists():
        return False, f"{model}: no Qwen2-VL weights there (config.json and *.safetensors expected)"
    if not _HUB_ID.match(model):
        return False, f"{model}: no such folder, and not a hub id like {DEFAULT_MODEL}"
    if resolved.startswith("cuda"):
        return True, f"CUDA GPU present; {model} will be downloaded from the Hugging Face hub"
    return False, f"no CUDA GPU and {model} is not downloaded (running it on CPU would be far slower than real time)"


def _local_weights(model: str) -> str | None:
    """The folder holding ``model``'s config and weights, without touching the network."""
    path = Path(model).expanduser()
    if path.is_dir():
        return str(path) if (path / "config.json").is_file() and any((path / w).is_file() for w in _WEIGHTS) else None
    if not _HUB_ID.match(model):
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    config = try_to_load_from_cache(model, "config.json")
    if not isinstance(config, str):
        return None
    folder = Path(config).parent
    return str(folder) if any((folder / w).is_file() for w in _WEIGHTS) else None


def _attention(requested: str | None, device: str) -> str:
    if requested:
        return requested
    if device.startswith("cuda") and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def load_qwen2vl(
    model: str = DEFAULT_MODEL,
    device: str = "auto",
    *,
    batch_size: int = 1,
    max_new_tokens: int = MAX_NEW_TOKENS,
    attn_implementation: str | None = None,
    dtype: str | None = None,
    kv_cache: str = "dynamic",
) -> QwenAnalyzer:
    """Load Qwen2-VL and its processor from a local folder or a hub id.

    bf16 on CUDA, float32 on CPU (unless ``dtype`` says otherwise); flash-attention 2 when
    installed on CUDA, else sdpa; ``kv_cache``: see ``QwenAnalyzer``. Raises ``AnalyzerError``
    with a one-line reason when the model cannot be loaded (no such folder, files missing, hub
    unreachable, out of memory).
    """
    from streampii._torchvision import ensure_torchvision

    ensure_torchvision()  # the video processor imports torchvision
    import torch

    if kv_cache not in KV_CACHES:
        raise AnalyzerError(f"--kv-cache must be one of {', '.join(KV_CACHES)}, got {kv_cache!r}")
    device = resolve_device(device)
    path = Path(model).expanduser()
    if path.exists():
        if not path.is_dir():
            raise AnalyzerError("is a file; a model folder or a hub id is expected")
        missing = [f for f in ("config.json", "preprocessor_config.json|processor_config.json") if not _has(path, f)]
        if not any((path / w).is_file() for w in _WEIGHTS):
            missing.append("model.safetensors")
        if missing:
            raise AnalyzerError(f"model folder lacks {', '.join(missing)}")
    elif not _HUB_ID.match(model):
        raise AnalyzerError(f"no such folder, and not a hub id like {DEFAULT_MODEL}")

    torch_dtype = getattr(torch, dtype) if dtype else (torch.bfloat16 if device.startswith("cuda") else torch.float32)
    attention = _attention(attn_implementation, device)
    processor, net = _from_pretrained(model, device, torch_dtype, attention, local_only=path.exists())
    return QwenAnalyzer(
        net,
        processor,
        model=model,
        device=device,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        kv_cache=kv_cache,
    )


def _has(folder: Path, names: str) -> bool:
    return any((folder / name).is_file() for name in names.split("|"))


def _from_pretrained(model: str, device: str, dtype, attention: str, local_only: bool):
    import torch
    from transformers import AutoProcessor, Qwen2VLForConditionalGeneration

    offline = local_only or os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    kwargs = {"dtype": dtype, "attn_implementation": attention}
    if importlib.util.find_spec("accelerate") is not None:
        kwargs["device_map"] = device  # straight to the GPU, no full copy in host RAM
    try:
        try:  # the cache first: no network round trip when the weights are already here
            processor = AutoProcessor.from_pretrained(model, local_files_only=True)
            net = Qwen2VLForConditionalGeneration.from_pretrained(model, local_files_only=True, **kwargs)
        except OSError:
            if offline:
                raise
            unreachable = _hub_unreachable()
            if unreachable:  # fail now instead of after huggingface_hub's minutes of retries
                raise AnalyzerError(
                    f"not in the local Hugging Face cache and the hub is unreachable ({unreachable})"
                ) from None
            processor = AutoProcessor.from_pretrained(model)
            net = Qwen2VLForConditionalGeneration.from_pretrained(model, **kwargs)
        if "device_map" not in kwargs:
            net = net.to(device)
    except (torch.cuda.OutOfMemoryError, MemoryError) as exc:
        raise AnalyzerError(f"out of memory loading the model on {device} ({_first_line(exc)})") from None
    except ImportError as exc:
        raise AnalyzerError(_first_line(exc)) from None
    except (OSError, ValueError, RuntimeError) as exc:
        reason = _first_line(exc)
        if "out of memory" in reason.lower():
            raise AnalyzerError(f"out of memory loading the model on {device}") from None
        if offline and not local_only:
            reason = f"not in the local Hugging Face cache and HF_HUB_OFFLINE is set ({reason})"
        elif not local_only:
            reason = f"cannot be fetched from the Hugging Face hub ({reason})"
        raise AnalyzerError(reason) from None
    return processor, net.eval()


def _hub_unreachable(timeout: float = 5.0) -> str | None:
    """Why the hub cannot be reached (DNS or TCP), or None; skipped behind a proxy."""
    import socket
    from urllib.parse import urlparse

    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host, port = url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        return f"{host}:{port}: {exc.strerror or exc}"
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


class QwenAnalyzer:
    """Qwen2-VL behind the ``Analyzer`` protocol.

    ``kv_cache="static"``: ``generate`` keeps keys and values in a preallocated cache, and on
    CUDA it then compiles the model's decoding step (transformers does when the cache allows it).
    The answer is decoded token by token, and each step of the usual loop is Python and one
    kernel launch after another: on an H200, 2B at batch 1 decoded 227 tokens/s instead of 27
    (docs/performance.md). Each new batch size or cache length costs a compile (about 25 s on
    an H200), so it pays on long runs; short batches are padded to a power of two and the cache
    length is rounded up, so a run sees a few of each. The answers are the same.
    """

    name = "qwen2-vl"

    def __init__(
        self,
        net,
        processor,
        *,
        model: str,
        device: str = "cpu",
        batch_size: int = 1,
        max_new_tokens: int = MAX_NEW_TOKENS,
        kv_cache: str = "dynamic",
    ) -> None:
        self.net = net
        self.processor = processor
        self.model_id = model
        self.device = device
        self.batch_size = max(1, batch_size)
        self.max_new_tokens = max_new_tokens
        self.kv_cache = kv_cache
        self.kv_cache_error: str | None = None  # why a static cache was given up for the dynamic one
        self.warm_up_seconds: float | None = None
        self._longest_prompt = 0  # tokens; warm_up sets it to the longest window the settings allow
        # transformers compiles the static cache's step on CUDA only; elsewhere a padded row would
        # be a window's work for nothing
        self.pad_static_batches = device.startswith("cuda")
        processor.tokenizer.padding_side = "left"  # batched generate continues every row at its end
        self._pad_id = processor.tokenizer.pad_token_id
        merge = getattr(processor.video_processor, "merge_size", 2)
        if merge * getattr(processor.video_processor, "patch_size", 14) != GRID:
            raise AnalyzerError(f"patch grid is not {GRID} pixels: not a Qwen2-VL processor")

    def describe(self) -> dict:
        config = self.net.config
        return {
            "analyzer": self.name,
            "model": self.model_id,
            "device": self.device,
            "dtype": str(self.net.dtype).removeprefix("torch."),
            "attention": getattr(config, "_attn_implementation", None),
            "batch_size": self.batch_size,
            "max_new_tokens": self.max_new_tokens,
            "kv_cache": self.kv_cache,
            **({"kv_cache_error": self.kv_cache_error} if self.kv_cache_error else {}),
            **({"warm_up_seconds": round(self.warm_up_seconds, 2)} if self.warm_up_seconds is not None else {}),
            "parameters": sum(p.numel() for p in self.net.parameters()),
            "decoding": "greedy",
        }

    def analyze(self, windows: Sequence[Window]) -> list[WindowResult]:
        """One result per window, in order, ``batch_size`` windows per ``generate`` call."""
        return list(self.iter_analyze(windows))

    def iter_analyze(self, windows: Iterable[Window]) -> Iterator[WindowResult]:
        """Like ``analyze``, yielding each batch's results as soon as it is generated."""
        batch: list[Window] = []
        for window in windows:
            batch.append(window)
            if len(batch) == self.batch_size:
                yield from self._run_batch(batch)
                batch = []
        if batch:
            yield from self._run_batch(batch)

    def _run_batch(self, batch: list[Window]) -> list[WindowResult]:
        import torch

        started = time.perf_counter()
        try:
            answers, tokens = self._generate(batch)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            if len(batch) > 1:  # retry in halves before giving up on any window
                half = len(batch) // 2
                return self._run_batch(batch[:half]) + self._run_batch(batch[half:])
            return [self._failed(batch[0], "out of memory on one window (lower --max-pixels or --window)", started)]
        except Exception as exc:
            if self.kv_cache == "static":
                self._give_up_static_cache(exc)
                return self._run_batch(batch)
            # any other fault of the model call (a CUDA error, a processor's on an odd window) fails
            # the windows, as a bad answer does: the run goes on, the manifest and a warning say why
            if len(batch) > 1:  # a fault of one window's fails that window alone
                half = len(batch) // 2
                return self._run_batch(batch[:half]) + self._run_batch(batch[half:])
            log.debug("window %d: the model call failed", batch[0].index, exc_info=True)
            return [self._failed(batch[0], f"model call failed ({type(exc).__name__}: {_first_line(exc)})", started)]
        seconds = (time.perf_counter() - started) / len(batch)
        return [self._result(w, a, n, seconds) for w, a, n in zip(batch, answers, tokens, strict=True)]

    def _give_up_static_cache(self, exc: Exception) -> None:
        """Go on with the dynamic cache after ``exc`` from a static-cache call; re-raise any other."""
        if self.kv_cache != "static":
            raise exc
        # the compile behind a static cache needs a working torch.compile stack (Triton, a C
        # compiler): where it fails, the run goes on as without --kv-cache static
        self.kv_cache, self.kv_cache_error = "dynamic", f"{type(exc).__name__}: {_first_line(exc)}"
        log.warning("--kv-cache static failed (%s): going on with the dynamic cache", self.kv_cache_error)

    def warm_up(self, frames: int, max_pixels: int) -> float:
        """Run ``generate`` on a blank window as large as ``frames`` frames of at most ``max_pixels``
        allow, once for each call size a run can make; return the seconds it took.

        The first call pays CUDA's start-up (about 10 s on an H200) and, with a static cache, each
        batch size a compile (about 25 s): before a camera is opened, so that none of its frames are
        dropped while the first window waits. The static cache is sized for the longest window these
        settings can give, so no later window makes it grow (each growth would be a compile).
        """
        import torch

        started = time.perf_counter()
        window = blank_window(frames, max_pixels)
        pairs = (len(window.frames) + 1) // 2
        text = self.processor.apply_chat_template(build_messages(window), tokenize=False, add_generation_prompt=True)
        # the prompt's text around one video placeholder, and the most visual tokens a window can have
        longest = len(self.processor.tokenizer(text)["input_ids"]) - 1 + pairs * (max_pixels // (GRID * GRID))
        self._longest_prompt = max(self._longest_prompt, longest)
        rows = [1]
        if self.kv_cache == "static" and self.pad_static_batches:
            rows = sorted({static_batch_rows(n, self.batch_size) for n in range(1, self.batch_size + 1)})
        for n in rows:
            try:
                self._generate([window] * n)
            except torch.cuda.OutOfMemoryError:
                torch.cuda.empty_cache()  # a run's calls of this size will be halved as they come
                log.warning("warm-up: out of memory with %d windows in a call; larger calls not warmed", n)
                break
            except Exception as exc:
                self._give_up_static_cache(exc)
                self._generate([window])  # CUDA's start-up, still worth paying now
                break
        self.warm_up_seconds = time.perf_counter() - started
        return self.warm_up_seconds

    def _generate(self, batch: list[Window]) -> tuple[list[str], list[int]]:
        import torch

        texts = [
            self.processor.apply_chat_template(build_messages(w), tokenize=False, add_generation_prompt=True)
            for w in batch
        ]
        videos = [window_video(w) for w in batch]
        inputs = self.processor(
            text=texts,
            videos=videos,
            padding=True,
            return_tensors="pt",
            do_resize=False,  # the sampler already put frames on the grid: resizing again would blur
            do_sample_frames=False,
            cap_pixels_per_frame=False,
            do_rescale=False,  # normalised below, once the uint8 frames are cut into patches
            do_normalize=False,
        )
        video_processor = self.processor.video_processor
        merge = video_processor.merge_size
        tokens = [int(thw.prod()) // merge**2 for thw in inputs["video_grid_thw"]]
        for window, n in zip(batch, tokens, strict=True):
            expected = visual_tokens(len(window.frames), *window.frames[0].image.shape[:2])
            if n != expected:  # a bug, not a user error: the processor changed the frames' size
                raise RuntimeError(f"window {window.index}: {n} visual tokens, expected {expected}")
        cache = {}
        if self.kv_cache == "static":
            if self.pad_static_batches:
                # each batch size is a compile and a CUDA graph of its own: a short batch (a file's
                # last, a shared call that --jobs could not fill) takes a power-of-two size, repeating
                # its last window, so a run sees a few sizes at most; the extra answers are dropped
                inputs = _repeat_last_row(inputs, static_batch_rows(len(batch), self.batch_size) - len(batch))
            cache["cache_implementation"] = "static"
            # transformers sizes the cache max(this call's length, the longest before it); a length
            # rounded up from the start keeps it from growing window by window, each growth a compile
            prompt = max(inputs["input_ids"].shape[1], self._longest_prompt)
            length = -(-(prompt + self.max_new_tokens) // _CACHE_STEP) * _CACHE_STEP
            self.net._previous_max_cache_length = max(getattr(self.net, "_previous_max_cache_length", -1), length)
        patches = inputs.pop("pixel_values_videos")
        inputs = inputs.to(self.net.device)
        # normalised where the model runs: to a GPU the uint8 patches cross the bus (a quarter of
        # the bytes) and the float arithmetic is the GPU's, not the pipeline thread's
        inputs["pixel_values_videos"] = normalized_patches(patches.to(self.net.device), video_processor)
        with torch.inference_mode():
            output = self.net.generate(
                **inputs,
                max_new_tokens=self.max_new_tokens,
                do_sample=False,
                pad_token_id=self._pad_id,
                temperature=None,
                top_p=None,
                top_k=None,
                **cache,
            )
        new = output[: len(batch), inputs["input_ids"].shape[1] :]
        # special tokens kept: Qwen2-VL's box markers are special tokens
        answers = self.processor.batch_decode(new, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        return [_strip_stop(a) for a in answers], tokens

    def _result(self, window: Window, answer: str, tokens: int, seconds: float) -> WindowResult:
        result = WindowResult(window, [], self.name, visual_tokens=tokens, seconds=seconds, raw=answer)
        try:
            parsed = parse_answer(answer, window, detector=self.name)
        except UnparseableAnswer as exc:
            # (the pipeline warns of a failed window, naming its input)
            log.info("window %d (%.2f-%.2f s): unusable answer: %s", window.index, window.start, window.end, exc)
            result.error = f"unparseable answer: {exc}"
            return result
        for problem in parsed.problems:
            log.info("window %d (%.2f-%.2f s): %s", window.index, window.start, window.end, problem)
        result.findings = parsed.findings
        return result

    def _failed(self, window: Window, reason: str, started: float) -> WindowResult:
        return WindowResult(window, [], self.name, error=reason, seconds=time.perf_counter() - started, unanswered=True)


def window_video(window: Window) -> np.ndarray:
    """The window's frames as one video, frames x H x W x 3. A stream that changes resolution
    gives a window frames of two grid sizes: the later ones are resized to the first one's (a
    box, 0..1000 of the picture, still maps to each frame's own size)."""
    height, width = window.frames[0].image.shape[:2]
    return np.stack(
        [
            f.image
            if f.image.shape[:2] == (height, width)
            else cv2.resize(f.image, (width, height), interpolation=cv2.INTER_AREA)
            for f in window.frames
        ]
    )


def blank_window(frames: int, max_pixels: int) -> Window:
    """A grey window of ``frames`` square frames (an even count) of at most ``max_pixels``, timed
    115 days into a run: its prompt is as long as any real window's for that long."""
    side = max(GRID, math.isqrt(max_pixels) // GRID * GRID)
    image = np.full((side, side, 3), 128, np.uint8)
    count = max(2, frames + frames % 2)
    start = 9_999_990.0
    return Window(0, tuple(Frame(i, start + i, image, (side, side)) for i in range(count)))


def static_batch_rows(windows: int, batch_size: int) -> int:
    """The rows of a call of ``windows`` with a static cache: the next power of two, at most ``batch_size``."""
    return max(windows, min(batch_size, 1 << (windows - 1).bit_length()))


def _repeat_last_row(inputs: Any, extra: int) -> Any:
    """``inputs`` of a batch with its last window repeated ``extra`` times: every per-window tensor
    (token ids, masks, token types, video grids) and the window's patches."""
    if extra <= 0:
        return inputs
    import torch

    rows = inputs["input_ids"].shape[0]
    patches = inputs["pixel_values_videos"]
    last = patches[-int(inputs["video_grid_thw"][-1].prod()) :]  # videos are concatenated patch rows
    for key, value in inputs.items():
        if key != "pixel_values_videos" and isinstance(value, torch.Tensor) and value.shape[0] == rows:
            inputs[key] = torch.cat([value, value[-1:].expand(extra, *value.shape[1:])])
    inputs["pixel_values_videos"] = torch.cat([patches, last.repeat(extra, 1)])
    return inputs


def normalized_patches(patches: torch.Tensor, video_processor: Any) -> torch.Tensor:
    """The processor's rescaling and normalisation applied to ``patches``, its uint8 patchified video.

    The processor normalises whole frames in float32, then cuts them into patches with a
    transposing copy of the float32 video (8 frames of 504x280: 13.5 MB) and concatenates the
    videos of a batch: 24 ms a window in the benchmark's pipeline (scripts/bench_e2e.py). Cut as
    uint8 (a quarter of the bytes), then normalised by the processor's own method: 18 ms, and the
    values are the same, bit for bit. Each patch is channel-major (channel, time, rows, columns),
    so viewed as channel x rows x columns it is an image the method understands.
    """
    vp = video_processor
    rows = patches.shape[1] // (3 * vp.patch_size)
    images = patches.view(patches.shape[0], 3, rows, vp.patch_size)
    mean = tuple(vp.image_mean) if isinstance(vp.image_mean, list) else vp.image_mean  # its cache hashes them
    std = tuple(vp.image_std) if isinstance(vp.image_std, list) else vp.image_std
    images = vp.rescale_and_normalize(images, vp.do_rescale, vp.rescale_factor, vp.do_normalize, mean, std)
    return images.reshape(patches.shape)


def _strip_stop(answer: str) -> str:
    """Drop the end-of-turn and padding tokens; keep everything else, box markers included."""
    for token in _STOP_TOKENS:
        answer = answer.replace(token, "")
    return answer.strip()
