"""Test harness: CPU only, 8 forced host devices, set before JAX initialises."""
import os

os.environ["JAX_PLATFORMS"] = "cpu"
_flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in _flags:
    os.environ["XLA_FLAGS"] = (_flags + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # noqa: E402  (must come after the environment is set)
import pytest  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")


# Strict dtype promotion (no silent int/float or int32/int64 mixing) for every test that
# does not step an optax optimizer: optax 0.2.8's Adam bias correction mixes its int step
# count with float moments, which only standard promotion allows.
OPTAX_TESTS = {"test_train", "test_prior", "test_ranker", "test_score", "test_distributed",
               "test_add_model", "test_owndata", "test_benchmark", "test_logo",
               "test_reliability_io", "test_parallel", "test_plots",
               "test_config_check"}


@pytest.fixture(autouse=True)
def _strict_dtype_promotion(request):
    if request.module.__name__.rsplit(".", 1)[-1] in OPTAX_TESTS:
        yield
        return
    with jax.numpy_dtype_promotion("strict"):
        yield
