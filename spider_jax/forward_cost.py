"""Measured forward-pass cost of each PTM (and psi) per example, for the benchmark.

Table 8 of the paper charges every method for the PTM forward passes it needs. A
feature bank stores features, not how long they took, so this module *measures* them:
each extraction network of the zoo runs in a fresh single-threaded process (one core,
as the bank build runs them) on a small batch of real items of the modality's
downstream source (:func:`spider_jax.extract.wheelzoo.sample_items`); the first batch is
a warm-up, the rest are timed. One forward pass of a network serves all of its taps, so
each bank member ``network@tap`` (and a psi tap) is charged its network's cost, measured
once (``network`` names it). Reported per member:

* ``seconds_per_example``: timed forward seconds / timed examples (weights loaded);
* ``load_seconds``: loading the weights (reported apart; a zoo keeps models loaded);
* ``model_peak_mb``: peak resident memory of that process (VmHWM, reset after the
  items are loaded) minus its resident memory before loading the model: weights, library
  and activations of one batch (``peak_rss_mb`` and ``baseline_rss_mb`` kept beside).

Only the wheel zoo (``spider_jax.extract.wheelzoo``) has adapters here; a bank without
them gets ``None`` (the benchmark then says "forward cost not measured"). Results are
cached as JSON so the benchmark's other runs reuse them.
"""

from __future__ import annotations

import concurrent.futures
import json
import multiprocessing
import os
import time

__all__ = ["measure_zoo", "load_or_measure", "wheel_adapters_available"]


def wheel_adapters_available() -> bool:
    """Whether the extract extra (torch, onnxruntime, the model wheels) imports."""
    try:
        from spider_jax.extract import wheelzoo

        wheelzoo.check_wheels()
        return True
    except Exception:  # noqa: BLE001 - any missing wheel means "cannot measure"
        return False


def _rss_mb(field: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def _networks() -> dict:
    """{bank member or psi name: the wheel-zoo network (adapter) whose forward gives it}."""
    from spider_jax.extract import wheelzoo

    return {t.name: a for a in wheelzoo.networks().values() for t in a.taps()}


def _measure_one(name: str, modality: str, num_items: int) -> dict:
    """Runs in a fresh process: load, warm up, time forward passes of the network that
    gives member (or psi) `name` (one forward serves all of a network's taps)."""
    from spider_jax.extract import pipeline, wheelzoo

    pipeline._single_thread_env()
    import gc

    adapter = _networks()[name]
    items = wheelzoo.sample_items(modality, num_items)
    gc.collect()
    base = _rss_mb("VmRSS")
    try:  # reset the peak-RSS counter so data loading is not charged to the model
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass
    t0 = time.perf_counter()
    adapter.load()
    load_s = time.perf_counter() - t0
    bs = adapter.batch_size
    warm = min(bs, 32)
    adapter.encode_taps(items[:warm])               # warm-up batch (lazy init, caches)
    timed = items[warm:]
    t0 = time.perf_counter()
    for lo in range(0, len(timed), bs):
        adapter.encode_taps(timed[lo:lo + bs])
    run_s = time.perf_counter() - t0
    peak = _rss_mb("VmHWM")
    return {"seconds_per_example": run_s / len(timed), "timed_examples": len(timed),
            "batch_size": bs, "load_seconds": load_s, "peak_rss_mb": peak,
            "baseline_rss_mb": base, "model_peak_mb": peak - base, "threads": 1,
            "source": "measured: extraction adapter, 1 thread, warm"}


def measure_zoo(names_by_modality: dict[str, list[str]], *, num_items: int = 160,
                progress=print) -> dict[str, dict]:
    """Measures every named adapter, each in its own fresh process (sequentially).

    Args:
      names_by_modality: {"image": [model or psi names], "text": [...]}.
      num_items: items per model (the first batch is a warm-up).

    Returns:
      {name: measurement dict} (see the module docstring).
    """
    ctx = multiprocessing.get_context("spawn")
    network = {n: a.name for n, a in _networks().items()}
    out, by_network = {}, {}
    for modality, names in names_by_modality.items():
        for name in names:
            net = network.get(name, name)
            if net not in by_network:  # the taps of one network share its measured forward
                with concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx) as pool:
                    by_network[net] = pool.submit(_measure_one, name, modality, num_items).result()
            out[name] = dict(by_network[net], modality=modality, network=net)
            if progress:
                progress(f"forward cost {name:<22} {1e3 * out[name]['seconds_per_example']:8.2f}"
                         f" ms/example, model peak {out[name]['model_peak_mb']:7.0f} MB")
    return out


def load_or_measure(path: str, bank, *, num_items: int = 160, progress=print) -> dict | None:
    """Cached measurements for every model and psi encoder of ``bank`` (wheel zoo only).

    Returns None when the bank is not the wheel zoo or its adapters are not installed.
    """
    names = {}
    for mod in ("image", "text"):
        models = [m for m in bank.models if bank.model_info(m)["modality"] == mod]
        psi = bank.psi_info(mod)
        if models:
            names[mod] = models + ([psi["name"]] if psi else [])
    wanted = {n for ns in names.values() for n in ns}
    if path and os.path.exists(path):
        with open(path) as fh:
            cached = json.load(fh)
        if wanted <= set(cached):
            return cached
    info_path = os.path.join(bank.root, "build_info.json")
    zoo = None
    if os.path.exists(info_path):
        with open(info_path) as fh:
            zoo = json.load(fh).get("zoo")
    if zoo != "wheel" or not wheel_adapters_available():
        return None
    costs = measure_zoo(names, num_items=num_items, progress=progress)
    if path:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path + ".tmp", "w") as fh:
            json.dump(costs, fh, indent=1)
        os.replace(path + ".tmp", path)
    return costs
