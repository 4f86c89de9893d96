"""Make ``import torchvision`` work beside a CPU-only torch.

The only torchvision wheels on the registries are CUDA builds. Beside CPU torch their
compiled extension fails to load, and ``torchvision/_meta_registrations.py`` then dies on
``register_fake("torchvision::nms")`` because the op schema was never defined. That failure
surfaces as unrelated import errors in transformers and qwen_vl_utils. Defining the two op
schemas first lets torchvision import with working transforms; where the extension loads
(a normal CUDA install) this does nothing.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_done = False
_library = None  # kept alive: dropping the Library object would undefine the schemas


def ensure_torchvision() -> None:
    """Call before the first import of torchvision, transformers' video processor or qwen_vl_utils."""
    global _done, _library
    if _done or "torchvision" in sys.modules:
        _done = True
        return
    _done = True
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        return
    import torch

    if _extension_loads(Path(spec.origin).parent, torch):
        return
    _library = torch.library.Library("torchvision", "DEF")
    _library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _library.define("qnms(Tensor dets, Tensor scores, float iou_threshold, float scale, int zero_point) -> Tensor")


def _extension_loads(package_dir: Path, torch) -> bool:
    for lib in sorted(package_dir.glob("_C*.so")) + sorted(package_dir.glob("_C*.pyd")):
        try:
            torch.ops.load_library(str(lib))
            return True
        except (OSError, RuntimeError):
            return False
    return False
