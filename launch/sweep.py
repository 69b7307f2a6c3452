"""Expand a grid of ``--config.*`` overrides into runs, each with its own workdir.

Prints the commands (default), runs them one after another here (``--mode=run``), or
submits each through a launcher prefix (``--mode=submit --launcher='sbatch --nodes=2
launch/slurm.sbatch'``). A run whose workdir already holds a finished checkpoint resumes
(spider_jax.train auto-resumes), so re-running a sweep only completes what is missing.

Example::

    python launch/sweep.py --config=configs/smoke.py --workdir_root=runs/sweep \
            --grid='optim.lr=1e-3,3e-4' --grid='model.num_layers=1,2' --mode=print

gives four runs, e.g. ``runs/sweep/optim.lr=0.001,model.num_layers=1``.
"""

from __future__ import annotations

import itertools
import os
import shlex
import subprocess
import sys
from collections.abc import Sequence

from absl import app, flags

_CONFIG = flags.DEFINE_string("config", None, "Config file, e.g. configs/smoke.py.", required=True)
_WORKDIR_ROOT = flags.DEFINE_string("workdir_root", None, "Parent of the runs' workdirs.",
                                                                        required=True)
_GRID = flags.DEFINE_multi_string(
        "grid", [], "One axis of the grid: 'field.path=v1,v2,...' (repeat the flag per axis).")
_ENTRY = flags.DEFINE_string("entry", "spider_jax.train", "Module run with python -m.")
_MODE = flags.DEFINE_enum("mode", "print", ["print", "run", "submit"],
                                                    "Print the commands, run them here in turn, or submit them.")
_LAUNCHER = flags.DEFINE_string("launcher", "", "Command prefix used with --mode=submit.")


def parse_axis(spec: str) -> tuple[str, list[str]]:
    """'optim.lr=1e-3,3e-4' -> ('optim.lr', ['1e-3', '3e-4']) with clear errors."""
    field, sep, values = spec.partition("=")
    field = field.strip().removeprefix("--config.").removeprefix("config.")
    vals = [v.strip() for v in values.split(",") if v.strip()]
    if not sep or not field or not vals:
        raise ValueError(f"grid axis {spec!r} must look like 'field.path=v1,v2'")
    return field, vals


def expand_grid(axes: Sequence[str]) -> list[dict[str, str]]:
    """Cartesian product of the axes, in the order given (last axis varies fastest)."""
    parsed = [parse_axis(a) for a in axes]
    fields = [f for f, _ in parsed]
    if len(set(fields)) != len(fields):
        raise ValueError(f"a field appears twice in the grid: {fields}")
    return [dict(zip(fields, combo)) for combo in itertools.product(*[v for _, v in parsed])]


def run_name(overrides: dict[str, str]) -> str:
    """A readable, filesystem-safe workdir name for one point of the grid."""
    name = ",".join(f"{k}={v}" for k, v in overrides.items()) or "base"
    return name.replace("/", "_").replace(" ", "")


def build_commands(config: str, workdir_root: str, axes: Sequence[str],
                                      entry: str = "spider_jax.train") -> list[list[str]]:
    """One argv per grid point, each with its own ``--workdir`` under ``workdir_root``."""
    commands = []
    for overrides in expand_grid(axes):
        argv = [sys.executable, "-m", entry, f"--config={config}",
                        f"--workdir={os.path.join(workdir_root, run_name(overrides))}"]
        argv += [f"--config.{k}={v}" for k, v in overrides.items()]
        commands.append(argv)
    return commands


def main(argv: Sequence[str]) -> None:
    del argv
    commands = build_commands(_CONFIG.value, _WORKDIR_ROOT.value, _GRID.value, _ENTRY.value)
    prefix = shlex.split(_LAUNCHER.value)
    if _MODE.value == "submit" and not prefix:
        raise app.UsageError("--mode=submit needs --launcher (e.g. 'sbatch launch/slurm.sbatch')")
    for i, argv_i in enumerate(commands, 1):
        full = (prefix + argv_i) if _MODE.value == "submit" else argv_i
        print(f"[{i}/{len(commands)}] {shlex.join(full)}", flush=True)
        if _MODE.value != "print":
            subprocess.run(full, check=True)


if __name__ == "__main__":
    app.run(main)
