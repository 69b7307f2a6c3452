"""The run layout of a training workdir, in one place: paths, the run's JSON, restore.

::

    WORKDIR/
      bank/                the synthetic bank of ``config.synthetic`` (no ``bank_dir``)
      <modality>/          one run per modality when ``config.modality`` is "all" or ""
                           (else the run is WORKDIR itself)
        config.json        the run config (``config.to_dict()``)
        zoo.json           {"zoo", "num_classes": C the training labels are padded to,
                            "max_classes": the most classes a task may have (the one
                            source of max_classes for every reader), "label_meta",
                            "extraction": the adapters the zoo came from (rank --data),
                            "zoo_prior": each PTM's mean accuracy over the training
                            pool (spider_jax.prior.zoo_prior; Ranker anchoring)}
        labels/            the label cache (unless ``config.label.cache_dir`` is set)
        checkpoints/       orbax steps: {"state": {step, params, opt_state}, "config"}
        checkpoints_unreadable/  steps that failed to restore, set aside on resume
        tb/                TensorBoard scalars

Training writes ``config.json`` and ``zoo.json`` once (:func:`write_run`); readers
(:func:`load_trained`, the Ranker, the benchmark) restore the parameters alone
(:func:`restore_params`): no optimizer state is rebuilt to rank.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time

import jax
import ml_collections
import orbax.checkpoint as ocp

from absl import logging

from spider_jax import atomic, parallel, synthetic
from spider_jax import bank as bank_lib
from spider_jax.model import SpiderScorer, init_params, make_scorer
from spider_jax.sampler import Zoo

__all__ = ["modalities_for", "run_dir_for", "cache_dir_for", "open_bank_for",
           "has_checkpoint", "find_run", "write_run", "read_run", "RunInfo",
           "checkpoint_manager", "restore_params", "load_trained", "check_workdir",
           "check_resume", "restore_latest_good", "RESUME_MAY_CHANGE"]

CONFIG_JSON, ZOO_JSON, CHECKPOINTS, LABELS, TENSORBOARD = (
    "config.json", "zoo.json", "checkpoints", "labels", "tb")
UNREADABLE = "checkpoints_unreadable"     # unreadable checkpoints set aside on resume


# ----------------------------------------------------------------------------- paths
def modalities_for(config, bank) -> list[str]:
    """``config.modality`` ("" or "all": every modality with models in the bank)."""
    if config.modality in ("", "all"):
        return [m for m in bank_lib.MODALITIES if bank.subset(m).models]
    return [config.modality]


def run_dir_for(config, workdir: str, modality: str) -> str:
    """The run directory of one modality: WORKDIR/<modality> when config.modality is "all"."""
    return os.path.join(workdir, modality) if config.modality in ("", "all") else workdir


def cache_dir_for(config, workdir: str, modality: str) -> str:
    """Where the labels of one modality are cached (shared by label and train)."""
    if config.label.cache_dir:
        return os.path.join(config.label.cache_dir, modality)
    return os.path.join(run_dir_for(config, workdir, modality), LABELS)


def tensorboard_dir(run_dir: str) -> str:
    return os.path.join(run_dir, TENSORBOARD)


def open_bank_for(config, workdir: str):
    """``config.bank_dir``, or the synthetic bank of ``config.synthetic`` in WORKDIR/bank."""
    if config.bank_dir:
        if not os.path.exists(os.path.join(config.bank_dir, "manifest.json")):
            raise FileNotFoundError(
                f"no feature bank at {config.bank_dir}. Build the wheel-zoo bank with\n"
                f"  python -m spider_jax.extract --zoo=wheel --out={config.bank_dir} && "
                f"python -m spider_jax.groundtruth --bank={config.bank_dir}")
        return bank_lib.open_bank(config.bank_dir)
    if config.synthetic.get("enabled", False):
        kwargs = {k: v for k, v in config.synthetic.items() if k != "enabled"}
        root = os.path.join(workdir, "bank")
        if parallel.is_main_process():      # one writer; the others wait, then open it
            synthetic.make_bank(root, **kwargs)
        parallel.sync("spider_jax.synthetic_bank")
        return bank_lib.open_bank(root)
    raise ValueError("set --config.bank_dir (or enable config.synthetic)")


def has_checkpoint(workdir: str, modalities) -> bool:
    """Whether every modality's run in ``workdir`` has its zoo.json and checkpoints."""
    return all(os.path.exists(os.path.join(workdir, m, ZOO_JSON))
               and os.path.isdir(os.path.join(workdir, m, CHECKPOINTS)) for m in modalities)


def find_run(workdir: str, modality: str | None = None) -> str:
    """The run directory of ``workdir`` (itself, or its one / named per-modality run)."""
    if not os.path.isdir(workdir):
        raise ValueError(f"workdir {workdir!r} does not exist")
    if os.path.exists(os.path.join(workdir, ZOO_JSON)):
        return workdir
    subs = [m for m in bank_lib.MODALITIES if os.path.exists(os.path.join(workdir, m, ZOO_JSON))]
    if modality is None:
        if len(subs) != 1:
            raise ValueError(f"{workdir} holds runs {subs}: pass modality=")
        modality = subs[0]
    if modality not in subs:
        raise ValueError(f"{workdir} has no trained {modality!r} run (found {subs})")
    return os.path.join(workdir, modality)


def check_workdir(workdir: str) -> None:
    """A usable run directory: a writable directory, or creatable (ValueError otherwise)."""
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise ValueError(f"--workdir={workdir} is a file, not a directory")
    probe = workdir
    while not os.path.exists(probe):
        probe = os.path.dirname(os.path.abspath(probe))
    if not os.path.isdir(probe):
        raise ValueError(f"cannot create --workdir={workdir}: {probe} is a file")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ValueError(f"--workdir={workdir}: {probe} is not writable")


# ----------------------------------------------------------------------------- run JSON
@dataclasses.dataclass(frozen=True)
class RunInfo:
    """What a run directory's JSON says: its config, zoo and class counts."""

    run_dir: str
    config: ml_collections.ConfigDict
    zoo: Zoo
    num_classes: int          # C the training labels were padded to
    max_classes: int          # the most classes a task may have (config.data.max_classes)
    label_meta: dict
    extraction: dict | None = None   # which adapters built the zoo (spider_jax.owndata)
    zoo_prior: dict | None = None    # spider_jax.prior.zoo_prior of the training pool


def write_run(run_dir: str, config, zoo: Zoo, num_classes: int, label_meta: dict, *,
              extraction: dict | None = None, **extra) -> None:
    """Writes ``config.json`` and ``zoo.json`` of a run (atomically; process 0 only).

    ``extraction``: the extraction zoo, psi and member -> network names the zoo came from
    (:func:`spider_jax.owndata.extraction_spec`; ``rank --data`` runs those adapters);
    ``extra``: further JSON fields (e.g. ``extended_from`` of ``spider_jax.add_model``).
    """
    atomic.write_json(os.path.join(run_dir, CONFIG_JSON), config.to_dict(), indent=1)
    atomic.write_json(os.path.join(run_dir, ZOO_JSON), {
        "zoo": zoo.to_json(), "num_classes": int(num_classes),
        "max_classes": int(config.data.max_classes), "label_meta": label_meta,
        "extraction": extraction, **extra}, indent=1)


# Fields that may change when a run resumes: logging, checkpoint cadence, where the bank
# and label cache live (the zoo itself is compared separately).
RESUME_MAY_CHANGE = ("train.log_every", "train.eval_every", "train.checkpoint_every",
                     "train.max_to_keep", "train.sleep_per_step", "bank_dir", "label.cache_dir",
                     "label.probe_backend")


def _flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _differences(stored: dict, new: dict, ignore=()) -> list[str]:
    a, b = _flat(stored), _flat(json.loads(json.dumps(new)))
    return [f"{k}: {a.get(k, '<absent>')!r} (stored) != {b.get(k, '<absent>')!r} (now)"
            for k in sorted(set(a) | set(b)) if k not in ignore and a.get(k) != b.get(k)]


def check_resume(run_dir: str, config, zoo: Zoo) -> None:
    """Refuses (ValueError naming the differing fields) to resume a run directory holding
    checkpoints made with another config or zoo; checks only, writes nothing."""
    ckpt = os.path.join(run_dir, CHECKPOINTS)
    if not os.path.isdir(ckpt) or not os.listdir(ckpt):
        return
    diffs = []
    for name, new, ignore in ((CONFIG_JSON, config.to_dict(), RESUME_MAY_CHANGE),
                              (ZOO_JSON, {"zoo": zoo.to_json()}, ())):
        path = os.path.join(run_dir, name)
        if not os.path.exists(path):
            continue
        try:
            with open(path) as fh:
                stored = json.load(fh)
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"{path}: unreadable ({e}); this run cannot be resumed") from None
        if name == ZOO_JSON:
            stored = {"zoo": stored.get("zoo")}
        prefix = "zoo." if name == ZOO_JSON else "config."
        diffs += [prefix + d for d in _differences(stored, new, ignore)]
    if diffs:
        raise ValueError(f"{run_dir} holds a trained run with another config or zoo; refusing "
                         f"to resume it (nothing was written). Differences: "
                         + "; ".join(diffs[:8]) + (f"; ... ({len(diffs) - 8} more)"
                                                   if len(diffs) > 8 else "")
                         + ". Use another --workdir, or the stored settings.")


def read_run(run_dir: str) -> RunInfo:
    """The :class:`RunInfo` of a run directory (``find_run`` gives one)."""
    with open(os.path.join(run_dir, CONFIG_JSON)) as fh:
        config = ml_collections.ConfigDict(json.load(fh))
    with open(os.path.join(run_dir, ZOO_JSON)) as fh:
        meta = json.load(fh)
    max_classes = meta.get("max_classes", config.data.max_classes)   # older runs: config
    return RunInfo(run_dir, config, Zoo.from_json(meta["zoo"]), int(meta["num_classes"]),
                   int(max_classes), meta.get("label_meta", {}), meta.get("extraction"),
                   meta.get("zoo_prior"))


# ----------------------------------------------------------------------------- checkpoints
def checkpoint_manager(run_dir: str, max_to_keep: int) -> ocp.CheckpointManager:
    """The orbax manager of ``run_dir/checkpoints`` (synchronous saves)."""
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                           enable_async_checkpointing=False)
    return ocp.CheckpointManager(os.path.abspath(os.path.join(run_dir, CHECKPOINTS)),
                                 options=options)


def restore_latest_good(mngr: ocp.CheckpointManager, restore, *, set_aside: str | None = None):
    """``restore(step)`` of the newest readable checkpoint: ``(step, result)``, or
    ``(None, None)`` when there is none.

    A checkpoint that fails to restore (a kill mid-save on a filesystem without atomic
    renames, a truncated file) is skipped with a warning naming it, and the previous one
    is tried.  With ``set_aside`` (a directory; training resumes), the unreadable ones
    are moved there so the resumed run can save those steps again.

    Raises:
      ValueError: checkpoints exist but none is readable (the last error is quoted).
    """
    steps = sorted(mngr.all_steps(), reverse=True)
    bad, error = [], None
    for step in steps:
        try:
            result = restore(step)
        except Exception as e:  # noqa: BLE001 - orbax/tensorstore raise many types
            error = e
            bad.append(step)
            logging.warning("checkpoint %d under %s is unreadable (%s: %s)", step,
                            mngr.directory, type(e).__name__, str(e).splitlines()[0][:200])
            continue
        if bad:
            msg = (f"warning: checkpoint(s) {bad} under {mngr.directory} are unreadable; "
                   f"using step {step}")
            if parallel.is_main_process():
                print(msg, file=sys.stderr)
            if set_aside is not None and parallel.is_main_process():
                os.makedirs(set_aside, exist_ok=True)
                for b in bad:
                    os.replace(os.path.join(str(mngr.directory), str(b)),
                               os.path.join(set_aside, f"{b}-{int(time.time())}"))
                mngr.reload()
        return step, result
    if not steps:
        return None, None
    raise ValueError(f"no readable checkpoint under {mngr.directory} (steps {steps}); last "
                     f"error: {type(error).__name__}: {str(error).splitlines()[0][:300]}")


def restore_params(run: RunInfo, model: SpiderScorer, mesh: jax.sharding.Mesh | None = None):
    """The latest checkpoint's parameters alone, replicated on ``mesh`` (default: every
    device). Any device and process count restores a checkpoint saved by any other:
    orbax would otherwise reuse the saved shardings."""
    abstract = jax.eval_shape(lambda: init_params(model, run.zoo, run.num_classes, 0))
    target = parallel.with_shardings(
        abstract, parallel.replicate_like(abstract, mesh or parallel.make_mesh()))
    def restore(step):
        path = os.path.join(os.path.abspath(run.run_dir), CHECKPOINTS, str(step), "state")
        with ocp.PyTreeCheckpointer() as ckptr:
            return ckptr.restore(path, args=ocp.args.PyTreeRestore(
                item={"params": target},
                restore_args={"params": ocp.checkpoint_utils.construct_restore_args(target)},
                partial_restore=True))

    mngr = checkpoint_manager(run.run_dir, max_to_keep=1)
    try:      # an unreadable latest checkpoint: the previous one, with a warning
        step, state = restore_latest_good(mngr, restore)
    finally:
        mngr.close()
    if step is None:
        raise ValueError(f"no checkpoint under {run.run_dir}/{CHECKPOINTS}")
    return state["params"]


def load_trained(workdir: str, modality: str | None = None,
                 mesh: jax.sharding.Mesh | None = None):
    """Restores a trained run: ``(config, model, params, zoo)``.

    Args:
      workdir: the ``--workdir`` of the run, or its per-modality sub-directory.
      modality: which sub-run when ``workdir`` holds several (W/image, W/text); may be
        omitted when there is exactly one.
      mesh: where the parameters are placed (replicated); default every device.
    """
    run = read_run(find_run(workdir, modality))
    model = make_scorer(run.config, run.zoo.dims)
    return run.config, model, restore_params(run, model, mesh), run.zoo
