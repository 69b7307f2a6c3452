"""Issue 12, item 3: every config is checked at start-up, before any labelling, with an
``error:`` line naming the field and its valid range; unknown override keys name the
nearest valid ones."""

import glob
import importlib
import os
import subprocess
import sys

import pytest

from spider_jax import config_check

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(REPO, "configs", "*.py"))
                 if not p.endswith("__init__.py"))


def _smoke():
    from configs import smoke
    return smoke.get_config()


@pytest.mark.parametrize("name", CONFIGS)
def test_shipped_configs_are_valid(name):
    config_check.check_config(importlib.import_module(f"configs.{name}").get_config())


@pytest.mark.parametrize("path,value,expected", [
    ("optim.lr", -1e-3, r"config\.optim\.lr = -0\.001: must be a finite number > 0"),
    ("train.batch_size", -100, r"config\.train\.batch_size = -100: must be an integer >= 1"),
    ("train.batch_size", 0, r"config\.train\.batch_size = 0: must be an integer >= 1"),
    ("train.num_epochs", -1, r"config\.train\.num_epochs = -1: must be an integer >= 0"),
    ("model.dropout", 1.5, r"config\.model\.dropout = 1\.5: must be a number in \[0, 1\)"),
    ("train.loss", "hinge", r"config\.train\.loss = 'hinge': must be one of"),
    ("label.methods", ("logme", "bogus"), r"config\.label\.methods = .*subset of"),
    ("data.max_classes", 1, r"config\.data\.max_classes = 1: must be an integer >= 2"),
])
def test_out_of_range_fields_are_named(path, value, expected):
    config = _smoke()
    section, field = path.split(".")
    config[section][field] = value
    with pytest.raises(config_check.ConfigError, match=expected):
        config_check.check_config(config)


def test_cross_field_checks():
    config = _smoke()
    config.train.num_epochs, config.train.num_steps = 0, 0       # used to exit 0 silently
    with pytest.raises(config_check.ConfigError, match="nothing to train"):
        config_check.check_config(config)
    config = _smoke()
    config.data.min_datasets, config.data.max_datasets = 3, 2
    with pytest.raises(config_check.ConfigError, match="max_datasets = 2: must be >= "):
        config_check.check_config(config)
    config = _smoke()
    config.model.d, config.model.num_heads = 64, 3
    with pytest.raises(config_check.ConfigError, match="divisible by config.model.num_heads"):
        config_check.check_config(config)


@pytest.mark.parametrize("arg,near", [
    ("--config.optim.lrr=1", "--config.optim.lr"),
    ("--config.train.lr=1", "--config.optim.lr"),
    ("--config.batchsize=4", "--config.train.batch_size"),
])
def test_unknown_override_names_nearest_fields(arg, near):
    with pytest.raises(config_check.ConfigError, match=f"did you mean {near}"):
        config_check.check_overrides(["prog", arg], _smoke())
    config_check.check_overrides(["prog", "--config.optim.lr=1", "--workdir=x"], _smoke())


def test_train_checks_before_writing_or_labelling(tmp_path):
    from spider_jax import train
    config = _smoke()
    config.train.batch_size = 0        # used to die with ZeroDivisionError after labelling
    workdir = tmp_path / "run"
    with pytest.raises(config_check.ConfigError, match="train.batch_size = 0"):
        train.train_and_evaluate(config, str(workdir))
    assert not workdir.exists()


def _cli(module, *args, cwd=REPO):
    env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu")
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("module", ["spider_jax.train", "spider_jax.label"])
def test_cli_error_lines(tmp_path, module):
    workdir = str(tmp_path / "run")
    r = _cli(module, "--config=configs/smoke.py", f"--workdir={workdir}", "--config.optim.lrr=1")
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("error: --config.optim.lrr")
    assert "did you mean --config.optim.lr" in r.stderr
    r = _cli(module, "--config=configs/smoke.py", f"--workdir={workdir}",
             "--config.optim.lr=-1", "--config.train.batch_size=-5")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: invalid config")
    assert "config.optim.lr = -1.0: must be a finite number > 0" in last
    assert "config.train.batch_size = -5: must be an integer >= 1" in last
    assert not os.path.exists(workdir)                 # nothing labelled or written
    r = _cli(module, "--config=configs/smoke.py", f"--workdir={workdir}",
             "--config.train.batch_size=abc")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("error: ")
