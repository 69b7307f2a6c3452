"""Start-up validation of a training config and of its command-line overrides.

Every entry point that takes ``--config`` (train, label, benchmark) calls:

* :func:`parse_flags` as absl's ``flags_parser`` (``app.run(main, flags_parser=...)``):
  an override of a field the config does not have (``--config.optim.lrr=1``) or a value
  of the wrong type becomes one ``error:`` line naming the field and the nearest valid
  ones (difflib), instead of an ml_collections traceback;
* :func:`check_config` before any labelling or training: every field with a range is
  checked and the first problems are reported together, each naming the field, its
  value and the valid range (a negative learning rate would train by gradient ascent,
  a batch size of 0 used to fail only after labelling).

Library use: ``check_config(config)`` raises :class:`ConfigError` (a ``ValueError``).
"""

from __future__ import annotations

import difflib
import numbers
import re
import sys
from collections.abc import Mapping, Sequence

__all__ = ["ConfigError", "check_config", "check_overrides", "config_paths", "parse_flags"]

_LABEL_METHODS = ("hscore", "nce", "leep", "logme")     # spider_jax.label.METHODS
_LOSSES = ("listmle", "listnet", "mse")                  # spider_jax.losses.LOSSES


class ConfigError(ValueError):
    """An invalid config field (the message names it and its valid range)."""


def config_paths(config, prefix: str = "") -> list[str]:
    """Every dotted field path of a (nested) ConfigDict / mapping, sections included."""
    out = []
    items = config.items() if isinstance(config, Mapping) or hasattr(config, "items") else ()
    for key, value in items:
        path = f"{prefix}{key}"
        out.append(path)
        if isinstance(value, Mapping) or hasattr(value, "items"):
            out += config_paths(value, path + ".")
    return out


def _nearest(path: str, valid: Sequence[str]) -> list[str]:
    """Up to 3 valid leaf fields close to ``path``: same last component in another
    section first (``train.lr`` -> ``optim.lr``), then close whole paths
    (``optim.lrr`` -> ``optim.lr``), then close last components."""
    leaves = [v for v in valid if not any(w.startswith(v + ".") for w in valid)]
    by_leaf: dict[str, list[str]] = {}
    for v in leaves:
        by_leaf.setdefault(v.rsplit(".", 1)[-1], []).append(v)
    leaf = path.rsplit(".", 1)[-1]
    near = list(by_leaf.get(leaf, []))
    near += difflib.get_close_matches(path, leaves, n=3, cutoff=0.6)
    for close in difflib.get_close_matches(leaf, list(by_leaf), n=3, cutoff=0.7):
        near += by_leaf[close]
    return list(dict.fromkeys(near))[:3]


def unknown_field_message(path: str, valid: Sequence[str], flag: str = "config") -> str:
    near = _nearest(path, valid)
    hint = f"; did you mean {', '.join(f'--{flag}.{n}' for n in near)}?" if near else ""
    return f"--{flag}.{path}: the config has no field {path!r}{hint}"


_OVERRIDE = re.compile(r"^--?(?:no)?(\w+)\.([\w.]+)(?:=.*)?$")


def check_overrides(argv: Sequence[str], config, flag: str = "config") -> None:
    """Raises ConfigError for an override ``--FLAG.a.b=v`` naming no field of ``config``."""
    valid = config_paths(config)
    for arg in argv[1:]:
        if arg == "--":
            break
        m = _OVERRIDE.match(arg)
        if not m or m.group(1) != flag:
            continue
        path = m.group(2)
        if path not in valid:
            # "--noconfig.a.b" is absl's negation of a boolean field.
            raise ConfigError(unknown_field_message(path, valid, flag))


def parse_flags(argv: list[str]) -> list[str]:
    """absl ``flags_parser``: parses the flags; a bad ``--config*`` flag exits with one
    ``error:`` line (unknown field with the nearest valid ones, or the parse problem)."""
    from absl import flags

    fl = flags.FLAGS
    try:
        return fl(argv)
    except Exception as e:  # noqa: BLE001 - absl / ml_collections raise many types
        config = None
        if "config" in fl and fl["config"].value is not None:
            config = fl["config"].value
        else:
            config = _config_from_argv(argv)
        msg = _describe_parse_error(e, argv, config)
        print(f"error: {msg}", file=sys.stderr)
        sys.exit(2)


def _config_from_argv(argv, flag: str = "config"):
    """The config ``--FLAG=PATH[:ARG]`` names (None when absent or not loadable): absl
    has not assigned it yet when an override in the same command line failed."""
    import importlib.util

    spec = None
    for i, arg in enumerate(argv[1:], 1):
        if arg.startswith(f"--{flag}="):
            spec = arg.split("=", 1)[1]
        elif arg == f"--{flag}" and i + 1 < len(argv):
            spec = argv[i + 1]
    if not spec:
        return None
    path, _, config_arg = spec.partition(":")
    try:
        mod_spec = importlib.util.spec_from_file_location("_spider_config_check", path)
        module = importlib.util.module_from_spec(mod_spec)
        mod_spec.loader.exec_module(module)
        return module.get_config(config_arg) if config_arg else module.get_config()
    except Exception:  # noqa: BLE001 - then only the parser's own message is shown
        return None


def _describe_parse_error(e: Exception, argv, config) -> str:
    if config is not None:
        try:
            check_overrides(argv, config)
        except ConfigError as ce:
            return str(ce)
    text = str(e).strip().replace("\\n", " ").replace("\n", " ")
    return text or type(e).__name__


# ----------------------------------------------------------------------------- ranges
def _get(config, path: str):
    node = config
    for key in path.split("."):
        node = node[key]
    return node


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_real(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


# (path, predicate, description of the valid range); checked in this order.
_RULES = [
    ("seed", _is_int, "an integer"),
    ("modality", lambda v: v in ("", "all", "image", "text"), "one of 'all', 'image', 'text'"),
    ("data.seed", _is_int, "an integer"),
    ("data.num_train_tasks", lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    ("data.min_datasets", lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    ("data.max_datasets", lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    ("data.max_classes", lambda v: _is_int(v) and v >= 2, "an integer >= 2"),
    ("data.examples_per_class", lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    ("label.methods", lambda v: isinstance(v, (list, tuple)) and len(v) > 0
     and all(m in _LABEL_METHODS for m in v), f"a non-empty subset of {_LABEL_METHODS}"),
    ("label.hscore", lambda v: v in ("auto", "plain", "regularized"),
     "one of 'auto', 'plain', 'regularized'"),
    ("label.chunk_size", lambda v: _is_int(v) and v >= 0,
     "an integer >= 0 (0: the platform default, parallel.default_batch(\"label\"))"),
    ("label.cache_dir", lambda v: isinstance(v, str), "a path ('' = WORKDIR/labels)"),
    ("model.d", lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    ("model.num_layers", lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    ("model.num_heads", lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    ("model.mlp_dim", lambda v: _is_int(v) and v >= 0, "an integer >= 0 (0 = no FFN)"),
    ("model.dropout", lambda v: _is_real(v) and 0 <= v < 1, "a number in [0, 1)"),
    ("model.attn_dropout", lambda v: _is_real(v) and 0 <= v < 1, "a number in [0, 1)"),
    ("optim.lr", lambda v: _is_real(v) and 0 < v < float("inf"), "a finite number > 0"),
    ("optim.end_lr", lambda v: _is_real(v) and 0 <= v < float("inf"), "a finite number >= 0"),
    ("optim.warmup_fraction", lambda v: _is_real(v) and 0 <= v < 1, "a number in [0, 1)"),
    ("optim.weight_decay", lambda v: _is_real(v) and 0 <= v < float("inf"),
     "a finite number >= 0"),
    ("optim.grad_clip", lambda v: _is_real(v) and 0 <= v < float("inf"),
     "a finite number >= 0 (0 = off)"),
    ("train.batch_size", lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    ("train.num_epochs", lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    ("train.num_steps", lambda v: _is_int(v) and v >= 0, "an integer >= 0 (0 = use num_epochs)"),
    ("train.max_specific", lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    ("train.loss", lambda v: v in _LOSSES, f"one of {_LOSSES}"),
    ("train.log_every", lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    ("train.eval_every", lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    ("train.checkpoint_every", lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    ("train.max_to_keep", lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    ("train.sleep_per_step", lambda v: _is_real(v) and v >= 0, "a number >= 0"),
    ("eval.max_examples_per_class", lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    ("eval.rerank_k", lambda v: isinstance(v, (list, tuple))
     and all(_is_int(k) and k >= 0 for k in v), "a list of integers >= 0 (() = no evaluation)"),
]


def _cross_checks(config) -> list[str]:
    out = []
    d, t, m = config.data, config.train, config.model
    if _is_int(d.min_datasets) and _is_int(d.max_datasets) and d.max_datasets < d.min_datasets:
        out.append(f"config.data.max_datasets = {d.max_datasets}: must be >= "
                   f"config.data.min_datasets = {d.min_datasets}")
    if _is_int(m.d) and _is_int(m.num_heads) and m.num_heads >= 1 and m.d % m.num_heads:
        out.append(f"config.model.d = {m.d}: must be divisible by config.model.num_heads = "
                   f"{m.num_heads}")
    if _is_int(t.num_epochs) and _is_int(t.num_steps) and t.num_epochs == 0 and t.num_steps == 0:
        out.append("config.train.num_epochs = 0 and config.train.num_steps = 0: nothing to "
                   "train; set one of them >= 1")
    if (_is_int(t.batch_size) and _is_int(d.num_train_tasks) and t.batch_size >= 1
            and d.num_train_tasks < t.batch_size):
        out.append(f"config.data.num_train_tasks = {d.num_train_tasks}: must be >= "
                   f"config.train.batch_size = {t.batch_size} (one batch per step)")
    if _is_real(config.optim.end_lr) and _is_real(config.optim.lr) \
            and config.optim.end_lr > config.optim.lr:
        out.append(f"config.optim.end_lr = {config.optim.end_lr}: must be <= config.optim.lr "
                   f"= {config.optim.lr} (the schedule decays)")
    return out


def check_config(config) -> None:
    """Raises :class:`ConfigError` listing every field outside its valid range.

    Each line reads ``config.FIELD = VALUE: must be RANGE``; fields missing from the
    config (an old config file) are reported as missing.
    """
    problems = []
    for path, ok, valid in _RULES:
        try:
            value = _get(config, path)
        except (KeyError, AttributeError):
            problems.append(f"config.{path} is missing (must be {valid})")
            continue
        try:
            good = bool(ok(value))
        except TypeError:
            good = False
        if not good:
            problems.append(f"config.{path} = {value!r}: must be {valid}")
    if not problems:
        problems = _cross_checks(config)
    if problems:
        raise ConfigError("invalid config: " + "; ".join(problems))
