"""Feature extraction: run pre-trained models over labelled datasets into a feature bank.

The only part of spider_jax that imports torch, transformers or onnxruntime (optional
``extract`` extra), always lazily inside the adapters. Pieces:

* ``adapters``: HF transformers (text mean pooling, image pooled output), a torch module
  with a forward hook, an ONNX graph with a named intermediate tensor, static embedding
  tables, and a wrapper for a package's own encoder.
* ``sources``: scikit-learn digits, an image folder, a CSV/JSONL text table, TFDS.
* ``pipeline.build_bank``: deterministic, batched, float16, resumable, one
  single-threaded worker process per core, tqdm progress.
* ``wheelzoo``: the zoo of real models and data shipped in pinned PyPI wheels.

Command line: ``python -m spider_jax.extract --zoo=wheel --out=BANK [--subset=mini]``.
Your own zoo: write a function returning ``(models, psi, sources)`` (dicts of adapters
by name and by modality, and a list of ``sources.Source``) and pass
``--zoo=package.module:function``; or call ``pipeline.build_bank`` from Python.
"""
