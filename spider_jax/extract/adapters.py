"""Model adapters: turn a batch of images or texts into frozen features (and source probs).

Each kind imports its heavy library only when loaded (in the worker):

* :class:`HFTextAdapter` / :class:`HFImageAdapter`: a transformers model from a local
  directory (text: attention-masked mean of the last hidden state; images: pooled output).
* :class:`TorchHookAdapter`: any ``torch.nn.Module``; a forward hook on a named submodule
  gives the features (4-D maps are global-average pooled) and the module's output, if it
  is a ``[B, C]`` logit vector, gives the source-head probabilities (softmax).
* :class:`OnnxAdapter`: an ONNX graph; a named intermediate tensor is exposed as an extra
  graph output (with the ``onnx`` package) and pooled over space or over tokens.
* :class:`StaticEmbeddingAdapter`: a static embedding table; a text is the (weighted)
  mean of its tokens' rows. Texts with no known token fall back to their characters,
  and only then to the zero vector (counted in ``num_empty``).
* :class:`FunctionAdapter`: wraps a package's own ``texts -> array`` encoder.
* :class:`SpacyAdapter`: a spaCy pipeline's tok2vec token mean and/or static doc vector.
* :class:`PosteriorAdapter`: a classifier's posterior over its own labels (e.g. language
  ID): log-posterior features plus the posterior as source head.
* :class:`MultiTapAdapter` (:class:`TorchMultiTapAdapter`, :class:`OnnxMultiTapAdapter`,
  :class:`HFTextMultiTapAdapter`, :class:`SpacyAdapter`): ONE forward pass of a network
  yields several bank members (:class:`Tap`: intermediate layers named like
  ``mobilenet_v2@features.14``, and possibly the modality's psi output), so extraction
  cost grows with networks, not members.

Images are passed as uint8 arrays ``[H, W, 3]`` (any size); texts as ``str``. Every
adapter returns float32 ``[B, dim]`` features and float32 ``[B, C_src]`` probabilities
or None. Adapters are cheap to construct and picklable; :meth:`Adapter.load` does the
heavy work once per worker process.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
from typing import Any, Callable, Sequence

import numpy as np


def resize_images(images: Sequence[np.ndarray], size: int) -> np.ndarray:
    """Bilinear resize of uint8 images to ``[B, size, size, 3]`` float32 in [0, 1].

    Args:
      images: uint8 arrays [H, W] or [H, W, 3].
      size: output side in pixels.
    """
    from PIL import Image

    out = np.empty((len(images), size, size, 3), np.float32)
    for i, img in enumerate(images):
        img = np.asarray(img)
        if img.ndim == 2:
            img = np.repeat(img[:, :, None], 3, axis=2)
        pil = Image.fromarray(np.ascontiguousarray(img[:, :, :3]).astype(np.uint8), "RGB")
        if pil.size != (size, size):
            pil = pil.resize((size, size), Image.BILINEAR)
        out[i] = np.asarray(pil, np.float32) / 255.0
    return out


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64, returned as float32."""
    z = np.asarray(logits, np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def masked_mean(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean of ``hidden[B, T, D]`` over tokens where ``mask[B, T]`` is 1."""
    m = np.asarray(mask, np.float32)[..., None]
    return (np.asarray(hidden, np.float32) * m).sum(1) / np.maximum(m.sum(1), 1.0)


@dataclasses.dataclass
class Adapter:
    """Base class. Subclasses implement :meth:`_load` and :meth:`_encode`.

    Attributes:
      name: model name in the bank.
      modality: "image" or "text".
      dim: feature dimension.
      num_source_classes: size of the source head (0 = none).
      batch_size: examples per forward pass.
      description: free text stored in the manifest.
    """

    name: str
    modality: str
    dim: int
    num_source_classes: int = 0
    batch_size: int = 32
    description: str = ""
    licence: str = ""

    def __post_init__(self):
        self._loaded = False

    def taps(self) -> list["Tap"]:
        """The bank members one forward pass produces (one for a plain adapter)."""
        return [Tap(self.name, "", self.dim, self.num_source_classes,
                    description=self.description, licence=self.licence)]

    def encode_taps(self, batch: Sequence[Any]) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
        """Encodes one batch: {tap key: (features [B, dim], source probs or None)}."""
        return {"": self.encode(batch)}

    def load(self) -> "Adapter":
        """Loads weights once (idempotent)."""
        if not self._loaded:
            self._load()
            self._loaded = True
        return self

    def encode(self, batch: Sequence[Any]) -> tuple[np.ndarray, np.ndarray | None]:
        """Encodes one batch.

        Returns:
          (features float32 [B, dim], source probabilities float32 [B, C_src] or None).
        """
        self.load()
        feats, probs = self._encode(batch)
        feats = np.asarray(feats, np.float32).reshape(len(batch), -1)
        if feats.shape[1] != self.dim:
            raise ValueError(f"{self.name}: produced dim {feats.shape[1]}, declared {self.dim}")
        if self.num_source_classes and probs is None:
            raise ValueError(f"{self.name}: declared a source head but produced no probabilities")
        return feats, (None if probs is None else np.asarray(probs, np.float32))

    def _load(self) -> None:
        raise NotImplementedError

    def _encode(self, batch):
        raise NotImplementedError

    def __getstate__(self):
        # Only the cheap description travels to worker processes; weights load there.
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_") or k == "_loaded"} | {
            "_loaded": False}


@dataclasses.dataclass(frozen=True)
class Tap:
    """One output of a network's forward pass, stored in the bank as its own member.

    Attributes:
      name: bank name: a ranked member (``network@tap``, e.g. ``mobilenet_v2@features.14``)
        or, when ``psi``, the task encoder's name.
      key: key of this output in :meth:`Adapter.encode_taps`'s dict.
      dim: feature width.
      num_source_classes: size of this member's source head (0 = none).
      psi: this output is the modality's task encoder psi (never ranked).
      description, licence: stored in the bank manifest.
    """

    name: str
    key: str
    dim: int
    num_source_classes: int = 0
    psi: bool = False
    description: str = ""
    licence: str = ""


@dataclasses.dataclass
class MultiTapAdapter(Adapter):
    """A network whose single forward pass yields several members (:class:`Tap`).

    ``name`` names the network (not a bank member); ``dim`` is unused. Subclasses
    implement :meth:`_load` and :meth:`_encode_taps` returning ``{key: features}`` or
    ``{key: (features, probs)}`` for every tap key.
    """

    dim: int = 0
    outputs: tuple = ()

    def __post_init__(self):
        super().__post_init__()
        self.outputs = tuple(self.outputs)
        keys = [t.key for t in self.outputs]
        if not self.outputs or len(set(keys)) != len(keys):
            raise ValueError(f"{self.name}: needs at least one tap, with distinct keys (got {keys})")
        if sum(t.psi for t in self.outputs) > 1:
            raise ValueError(f"{self.name}: at most one tap can be psi")

    def taps(self) -> list[Tap]:
        return list(self.outputs)

    def encode(self, batch):
        raise TypeError(f"{self.name} is a multi-tap network: use encode_taps")

    def encode_taps(self, batch):
        self.load()
        raw = self._encode_taps(batch)
        out = {}
        for t in self.outputs:
            if t.key not in raw:
                raise ValueError(f"{self.name}: forward produced no output for tap {t.key!r} ({t.name})")
            val = raw[t.key]
            feats, probs = val if isinstance(val, tuple) else (val, None)
            feats = np.asarray(feats, np.float32).reshape(len(batch), -1)
            if feats.shape[1] != t.dim:
                raise ValueError(f"{t.name}: produced dim {feats.shape[1]}, declared {t.dim}")
            if t.num_source_classes and probs is None:
                raise ValueError(f"{t.name}: declared a source head but produced no probabilities")
            out[t.key] = (feats, None if probs is None else np.asarray(probs, np.float32))
        return out

    def _encode_taps(self, batch) -> dict:
        raise NotImplementedError


# ----------------------------------------------------------------------------- HF
class _HFTextMixin:
    """Shared by the HF text adapters: local tokenizer + encoder, one padded forward."""

    def _load(self):
        import torch
        import transformers

        self._torch = torch
        self._tok = transformers.AutoTokenizer.from_pretrained(self.path, local_files_only=True)
        self._model = transformers.AutoModel.from_pretrained(self.path, local_files_only=True).eval()

    def _forward(self, batch, hidden_states: bool):
        enc = self._tok([self.prefix + t for t in batch], padding=True, truncation=True,
                        max_length=self.max_length, return_tensors="pt")
        with self._torch.inference_mode():
            out = self._model(**enc, output_hidden_states=hidden_states)
        return out, enc["attention_mask"].numpy()


@dataclasses.dataclass
class HFTextAdapter(_HFTextMixin, Adapter):
    """transformers encoder from a local directory; attention-masked mean pooling.

    Attributes:
      path: directory with config, weights and tokenizer (no hub access).
      max_length: tokens per text (longer texts are truncated).
      prefix: prepended to every text (e.g. "passage: " for E5 models).
    """

    path: str = ""
    max_length: int = 128
    prefix: str = ""

    def _encode(self, batch):
        out, mask = self._forward(batch, hidden_states=False)
        return masked_mean(out.last_hidden_state.float().numpy(), mask), None


@dataclasses.dataclass
class HFTextMultiTapAdapter(_HFTextMixin, MultiTapAdapter):
    """transformers text encoder whose layers are taps of one forward pass.

    A tap's key is a hidden-state index as a string: "0" is the embedding output, "k"
    the output of transformer layer k (the last one equals ``last_hidden_state``); each
    is attention-masked mean pooled. Attributes as :class:`HFTextAdapter`.
    """

    path: str = ""
    max_length: int = 128
    prefix: str = ""

    def _encode_taps(self, batch):
        out, mask = self._forward(batch, hidden_states=True)
        hs = out.hidden_states
        res = {}
        for t in self.outputs:
            if not t.key.isdigit() or int(t.key) >= len(hs):
                raise ValueError(f"{t.name}: tap key {t.key!r} is not a hidden-state index 0..{len(hs) - 1}")
            res[t.key] = masked_mean(hs[int(t.key)].float().numpy(), mask)
        return res


@dataclasses.dataclass
class HFImageAdapter(Adapter):
    """transformers vision model from a local directory; ``pooler_output`` features.

    Falls back to the token mean of ``last_hidden_state`` when the model has no pooler.
    """

    path: str = ""

    def _load(self):
        import torch
        import transformers

        self._torch = torch
        self._proc = transformers.AutoImageProcessor.from_pretrained(self.path, local_files_only=True)
        self._model = transformers.AutoModel.from_pretrained(self.path, local_files_only=True).eval()

    def _encode(self, batch):
        torch = self._torch
        images = [np.repeat(np.asarray(b)[:, :, None], 3, 2) if np.ndim(b) == 2 else np.asarray(b)
                  for b in batch]
        inputs = self._proc(images=images, return_tensors="pt")
        with torch.inference_mode():
            out = self._model(**inputs)
        feats = getattr(out, "pooler_output", None)
        if feats is None:
            h = out.last_hidden_state
            feats = h.mean(dim=tuple(range(1, h.ndim - 1))) if h.ndim > 2 else h
        return feats.reshape(len(batch), -1).float().numpy(), None


# ----------------------------------------------------------------------------- torch
@dataclasses.dataclass
class TorchHookAdapter(Adapter):
    """A torch module with a forward hook on a named submodule.

    Attributes:
      build: picklable callable returning the module (weights loaded, any dtype).
      layer: dotted submodule name whose output is the feature (4-D: average pooled).
      image_size: input side; images are bilinearly resized to it.
      mean, std: per-channel normalisation applied to [0, 1] RGB inputs.
    """

    build: Callable[[], Any] | None = None
    layer: str = ""
    image_size: int = 224
    mean: tuple = (0.485, 0.456, 0.406)
    std: tuple = (0.229, 0.224, 0.225)

    def _load(self):
        import torch

        self._torch = torch
        self._module = self.build().eval()
        sub = _named_submodules(self.name, self._module, [self.layer])[self.layer]
        self._captured = []
        sub.register_forward_hook(lambda _m, _i, out: self._captured.append(out))

    def _encode(self, batch):
        self._captured.clear()
        out = _torch_forward(self._torch, self._module, batch, self.image_size, self.mean, self.std)
        feats = _pool_torch(self._captured[-1], len(batch))
        probs = softmax(out.float().numpy()) if self.num_source_classes else None
        return feats, probs


def _torch_forward(torch, module, batch, image_size, mean, std):
    """One inference forward of `module` on images resized to `image_size` and normalised."""
    x = (resize_images(batch, image_size) - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    with torch.inference_mode():
        return module(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))))


def _pool_torch(feats, batch: int) -> np.ndarray:
    """A hooked module output as [B, D] float32 (4-D maps are global-average pooled)."""
    if feats.ndim == 4:
        feats = feats.mean(dim=(2, 3))
    return feats.reshape(batch, -1).float().numpy()


def _named_submodules(name: str, module, wanted) -> dict:
    """{dotted name: submodule} for `wanted`; a clear error names any that do not exist."""
    named = dict(module.named_modules())
    missing = [w for w in wanted if w not in named]
    if missing:
        top = [n for n in named if n and "." not in n]
        raise ValueError(f"{name}: no submodule named {missing} (top-level submodules: {top})")
    return {w: named[w] for w in wanted}


@dataclasses.dataclass
class TorchMultiTapAdapter(MultiTapAdapter):
    """A torch module with forward hooks on several submodules: ONE forward serves all taps.

    Each :class:`Tap` key is a dotted submodule name whose output is that member's feature
    (4-D maps global-average pooled). A tap whose key is in ``logits`` also gets the
    module's output (``[B, C]`` logits, softmax applied) as its source-head probabilities.

    Attributes:
      build: picklable callable returning the module (weights loaded).
      image_size: input side; images are bilinearly resized to it.
      mean, std: per-channel normalisation applied to [0, 1] RGB inputs.
      logits: tap keys that carry the module's output as their source head.
    """

    build: Callable[[], Any] | None = None
    image_size: int = 224
    mean: tuple = (0.485, 0.456, 0.406)
    std: tuple = (0.229, 0.224, 0.225)
    logits: tuple = ()

    def _load(self):
        import torch

        self._torch = torch
        unknown = sorted(set(self.logits) - {t.key for t in self.outputs})
        if unknown:
            raise ValueError(f"{self.name}: logits names {unknown}, which are not tap keys")
        self._module = self.build().eval()
        self._captured = {}
        for key, sub in _named_submodules(self.name, self._module, [t.key for t in self.outputs]).items():
            sub.register_forward_hook(functools.partial(_capture, self._captured, key))

    def _encode_taps(self, batch):
        self._captured.clear()
        out = _torch_forward(self._torch, self._module, batch, self.image_size, self.mean, self.std)
        probs = softmax(out.float().numpy()) if self.logits else None
        return {t.key: (_pool_torch(self._captured[t.key], len(batch)),
                        probs if t.key in self.logits else None) for t in self.outputs}


def _capture(store: dict, key: str, _module, _inputs, output) -> None:
    store[key] = output


# ----------------------------------------------------------------------------- ONNX
def onnx_with_outputs(path: str, tensors: Sequence[str], *, symbolic_hw: bool = False) -> bytes:
    """Returns the serialized graph at `path` with `tensors` added as graph outputs.

    Args:
      path: .onnx file.
      tensors: intermediate tensor names to expose (already-exposed ones are kept).
      symbolic_hw: make the image input's height and width symbolic.
    """
    import onnx

    model = onnx.load(path)
    names = {o.name for o in model.graph.output}
    produced = {o for n in model.graph.node for o in n.output}
    for t in tensors:
        if t not in produced and t not in names:
            raise ValueError(f"{path}: graph has no tensor named {t!r}")
        if t not in names:
            model.graph.output.append(onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None))
    if symbolic_hw:
        dims = model.graph.input[0].type.tensor_type.shape.dim
        # NCHW or NHWC: the two spatial axes are the ones not equal to 3 after the batch axis.
        spatial = [i for i in range(1, len(dims)) if dims[i].dim_value != 3][:2]
        for i, label in zip(spatial, ("height", "width")):
            dims[i].ClearField("dim_value")
            dims[i].dim_param = label
    return model.SerializeToString()


def ort_session(model: bytes | str, threads: int = 1):
    """An onnxruntime CPU session limited to `threads` threads."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])


@dataclasses.dataclass
class OnnxAdapter(Adapter):
    """An ONNX graph with a named intermediate tensor as the feature.

    Attributes:
      path: the .onnx file.
      tensor: intermediate (or output) tensor name giving the features.
      prepare: picklable callable(batch) -> (feeds dict, token mask [B, T] or None).
      pool: "spatial" (mean over all axes but batch and channel, NCHW), "tokens"
        (masked mean over axis 1), "none" (flatten).
      logits_tensor: optional output giving source logits (softmax applied).
      symbolic_hw: make the input height/width symbolic so any side can be fed.
    """

    path: str = ""
    tensor: str = ""
    prepare: Callable[[Sequence[Any]], tuple[dict, np.ndarray | None]] | None = None
    pool: str = "spatial"
    logits_tensor: str = ""
    symbolic_hw: bool = False

    def _load(self):
        wanted = [self.tensor] + ([self.logits_tensor] if self.logits_tensor else [])
        self._sess = ort_session(onnx_with_outputs(self.path, wanted, symbolic_hw=self.symbolic_hw))
        self._inputs = {i.name for i in self._sess.get_inputs()}
        self._wanted = wanted

    def _encode(self, batch):
        feeds, mask = self.prepare(batch)
        feeds = {k: v for k, v in feeds.items() if k in self._inputs}
        outs = self._sess.run(self._wanted, feeds)
        feats = np.asarray(outs[0], np.float32)
        if self.pool == "spatial" and feats.ndim > 2:
            feats = feats.mean(axis=tuple(range(2, feats.ndim)))
        elif self.pool == "tokens":
            feats = masked_mean(feats, mask)
        probs = softmax(np.asarray(outs[1]).reshape(len(batch), -1)) if self.logits_tensor else None
        return feats.reshape(len(batch), -1), probs


def pool_output(x: np.ndarray, pool: str, mask: np.ndarray | None, batch: int) -> np.ndarray:
    """Pools one graph output to ``[B, D]``: "spatial" (mean over axes 2.. of NCHW),
    "spatial_nhwc" (mean over axes 1..-2), "tokens" (masked mean over axis 1), "none"."""
    x = np.asarray(x, np.float32)
    if pool == "spatial" and x.ndim > 2:
        x = x.mean(axis=tuple(range(2, x.ndim)))
    elif pool == "spatial_nhwc" and x.ndim > 2:
        x = x.mean(axis=tuple(range(1, x.ndim - 1)))
    elif pool == "tokens":
        x = masked_mean(x, mask)
    elif pool not in ("none", "spatial", "spatial_nhwc"):
        raise ValueError(f"unknown pool {pool!r}")
    return x.reshape(batch, -1)


@dataclasses.dataclass
class OnnxMultiTapAdapter(MultiTapAdapter):
    """An ONNX graph with several named tensors exposed as outputs in one run.

    Attributes:
      path: the .onnx file.
      prepare: picklable callable(batch) -> (feeds dict, token mask [B, T] or None).
      pools: {tap key (= tensor name): pool mode} (default "spatial"; see
        :func:`pool_output`).
      logits: {tap key: logits tensor name} for taps with a source head (softmax applied).
      symbolic_hw: make the input height/width symbolic so any side can be fed.
      fixed_batch: feed the graph one example at a time (graphs with batch fixed at 1).
    """

    path: str = ""
    prepare: Callable[[Sequence[Any]], tuple[dict, np.ndarray | None]] | None = None
    pools: dict = dataclasses.field(default_factory=dict)
    logits: dict = dataclasses.field(default_factory=dict)
    symbolic_hw: bool = False
    fixed_batch: bool = False

    def _load(self):
        self._wanted = [t.key for t in self.outputs] + sorted(set(self.logits.values()))
        self._sess = ort_session(onnx_with_outputs(self.path, self._wanted, symbolic_hw=self.symbolic_hw))
        self._inputs = {i.name for i in self._sess.get_inputs()}

    def _run(self, batch):
        feeds, mask = self.prepare(batch)
        feeds = {k: v for k, v in feeds.items() if k in self._inputs}
        return dict(zip(self._wanted, self._sess.run(self._wanted, feeds))), mask

    def _encode_taps(self, batch):
        if self.fixed_batch and len(batch) > 1:
            parts = [self._encode_taps([x]) for x in batch]
            return {k: (np.concatenate([p[k][0] for p in parts]),
                        None if parts[0][k][1] is None else np.concatenate([p[k][1] for p in parts]))
                    for k in parts[0]}
        outs, mask = self._run(batch)
        res = {}
        for t in self.outputs:
            feats = pool_output(outs[t.key], self.pools.get(t.key, "spatial"), mask, len(batch))
            lt = self.logits.get(t.key)
            probs = softmax(np.asarray(outs[lt], np.float32).reshape(len(batch), -1)) if lt else None
            res[t.key] = (feats, probs)
        return res


# ----------------------------------------------------------------------------- static
_WORD_RE = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def word_tokens(text: str) -> list[str]:
    """Lower-cased words and single punctuation marks (GloVe-style tokenisation)."""
    return _WORD_RE.findall(text.lower())


@dataclasses.dataclass
class StaticEmbeddingAdapter(Adapter):
    """A static embedding table; text = (weighted) mean of its tokens' rows.

    Attributes:
      loader: picklable callable returning a dict with
        "table" [R, D] (any numeric dtype), "tokenize" (str -> list[int] token ids),
        and optionally "token_to_row" [V] int (token id -> table row), "token_weight"
        [V] float, "char_tokenize" (str -> ids, used when a text has no known token).
      normalize: L2-normalise each text vector.
    A text whose tokens are all unknown falls back to its characters ("char_tokenize")
    and otherwise gets the zero vector; ``num_empty`` counts those.
    """

    loader: Callable[[], dict] | None = None
    normalize: bool = False

    def _load(self):
        spec = self.loader()
        self._table = np.asarray(spec["table"])
        self._tokenize = spec["tokenize"]
        self._char_tokenize = spec.get("char_tokenize")
        self._row = spec.get("token_to_row")
        self._weight = spec.get("token_weight")
        self.num_empty = 0
        self.num_char_fallback = 0

    def _vector(self, ids: list[int]) -> np.ndarray | None:
        ids = np.asarray([i for i in ids if i is not None and i >= 0], np.int64)
        if ids.size == 0:
            return None
        rows = self._row[ids] if self._row is not None else ids
        vecs = self._table[rows].astype(np.float32)
        if self._weight is not None:
            vecs = vecs * np.asarray(self._weight, np.float32)[ids][:, None]
        return vecs.mean(0)

    def _encode(self, batch):
        out = np.zeros((len(batch), self.dim), np.float32)
        for i, text in enumerate(batch):
            v = self._vector(self._tokenize(text))
            if v is None and self._char_tokenize is not None:
                v = self._vector(self._char_tokenize(text))
                self.num_char_fallback += v is not None
            if v is None:
                self.num_empty += 1
                continue
            if self.normalize:
                v = v / max(float(np.linalg.norm(v)), 1e-12)
            out[i] = v
        return out, None


@dataclasses.dataclass
class FunctionAdapter(Adapter):
    """Wraps a package's own encoder: ``factory()`` returns ``fn(batch) -> [B, dim]``."""

    factory: Callable[[], Callable[[Sequence[Any]], np.ndarray]] | None = None

    def _load(self):
        self._fn = self.factory()

    def _encode(self, batch):
        return np.asarray(self._fn(list(batch)), np.float32), None


# ----------------------------------------------------------------------------- spaCy
@dataclasses.dataclass
class SpacyAdapter(MultiTapAdapter):
    """A spaCy pipeline loaded from a local directory; every tap comes from one ``nlp.pipe``.

    Tap keys: "tok2vec" (mean over tokens of ``doc.tensor``, the tok2vec component's
    context vectors) and "vectors" (``doc.vector``, the mean static word vector; OOV
    tokens count as zero). An empty doc gets the zero vector.

    Attributes:
      path: the pipeline's data directory (the one holding ``config.cfg``).
      keep: pipeline components to run (everything else is excluded).
    """

    path: str = ""
    keep: tuple = ("tok2vec",)

    def _load(self):
        import warnings

        import spacy

        with warnings.catch_warnings():  # older pipelines warn about the spaCy version
            warnings.simplefilter("ignore")
            config = spacy.util.load_config(os.path.join(self.path, "config.cfg"))
            names = list(config["nlp"]["pipeline"])
            self._nlp = spacy.load(self.path, exclude=[n for n in names if n not in self.keep])

    def _encode_taps(self, batch):
        res = {t.key: np.zeros((len(batch), t.dim), np.float32) for t in self.outputs}
        for i, doc in enumerate(self._nlp.pipe(list(batch), batch_size=len(batch))):
            if not len(doc):
                continue
            if "tok2vec" in res:
                res["tok2vec"][i] = np.asarray(doc.tensor, np.float32).mean(0)
            if "vectors" in res:
                res["vectors"][i] = np.asarray(doc.vector, np.float32)
        return res


# ----------------------------------------------------------------------------- posteriors
@dataclasses.dataclass
class PosteriorAdapter(Adapter):
    """A classifier's posterior over its own labels (e.g. a language identifier).

    Features are the log-posterior ``log(max(p, floor))`` in a fixed label order; the
    posterior itself is the source head (LEEP / NCE / PACTran use it).

    Attributes:
      factory: picklable callable returning ``fn(batch) -> probs [B, C]`` (rows sum to 1).
      floor: smallest probability kept before the log.
    """

    factory: Callable[[], Callable[[Sequence[Any]], np.ndarray]] | None = None
    floor: float = 1e-6

    def __post_init__(self):
        super().__post_init__()
        if self.num_source_classes and self.num_source_classes != self.dim:
            raise ValueError(f"{self.name}: posterior width {self.dim} != source classes {self.num_source_classes}")

    def _load(self):
        self._fn = self.factory()

    def _encode(self, batch):
        p = np.asarray(self._fn(list(batch)), np.float64)
        if p.shape != (len(batch), self.dim) or not np.all(np.isfinite(p)):
            raise ValueError(f"{self.name}: posterior of shape {p.shape} (want {(len(batch), self.dim)}) or not finite")
        return np.log(np.maximum(p, self.floor)).astype(np.float32), p.astype(np.float32)
