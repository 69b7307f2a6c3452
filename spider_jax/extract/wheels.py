"""Locating and checking the pinned PyPI wheels the wheel zoo reads its models and data from.

Shared by the image (:mod:`spider_jax.extract.wheelzoo_image`) and text
(:mod:`spider_jax.extract.wheelzoo_text`) halves of the zoo. Nothing here imports the
wheels themselves (some import cv2 or TensorFlow, or reach for a hub at import time).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os

import numpy as np

INSTALL_LINE = "pip install --no-deps -r requirements/wheelzoo.txt"


def check_pins(pins: dict[str, str], names=None) -> None:
    """Raises RuntimeError listing missing or mismatched pins, with the pip line to fix it.

    Args:
      pins: {distribution: pinned version}.
      names: only check these distributions (default: all of `pins`).
    """
    bad = []
    for dist, version in pins.items():
        if names is not None and dist not in names:
            continue
        try:
            have = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            bad.append(f"{dist}=={version} (missing)")
            continue
        if not same_version(have, version):
            bad.append(f"{dist}=={version} (found {have})")
    if bad:
        wanted = " ".join(b.split(" ")[0] for b in bad)
        raise RuntimeError(
            "the wheel zoo needs these pinned wheels:\n  " + "\n  ".join(bad) +
            f"\ninstall them with:\n  {INSTALL_LINE}\nor just these:\n  pip install --no-deps {wanted}")


def same_version(have: str, pinned: str) -> bool:
    """Whether an installed version is the pinned one (PEP 440: the fontpkg wheels' metadata
    says "1.006" for the "1.6" pip installs; a local "+cpu" build tag is ignored)."""
    from packaging.version import InvalidVersion, Version

    have = have.split("+")[0]
    try:
        return Version(have) == Version(pinned)
    except InvalidVersion:
        return have == pinned


def pkg_dir(module: str, required: bool = True) -> str:
    """Directory of an installed package without importing it (some import cv2/TF).

    With ``required=False`` a missing package gives a placeholder path naming the fix, so
    adapters can be described without every wheel installed (loading one then fails
    with that message in the path).
    """
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        if not required:
            return f"<{module} is not installed; run: {INSTALL_LINE}>"
        raise RuntimeError(f"package {module} is not installed; run: {INSTALL_LINE}")
    return list(spec.submodule_search_locations)[0]


def site_dir(name: str, required: bool = True) -> str:
    """A top-level directory in site-packages that is not an importable module name."""
    base = os.path.dirname(pkg_dir("numpy"))
    path = os.path.join(base, name)
    if not os.path.isdir(path):
        if not required:
            return f"<{name} is not installed; run: {INSTALL_LINE}>"
        raise RuntimeError(f"{path} missing; run: {INSTALL_LINE}")
    return path


def read_safetensors(path: str) -> dict[str, np.ndarray]:
    """Reads a .safetensors file with NumPy only (header JSON + raw little-endian data)."""
    dtypes = {"F32": np.float32, "F16": np.float16, "I8": np.int8, "I64": np.int64, "I32": np.int32,
              "U8": np.uint8}
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        out[k] = np.frombuffer(data[a:b], dtype=dtypes[v["dtype"]]).reshape(v["shape"])
    return out
