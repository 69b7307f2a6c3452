"""Shared defaults of every spider_jax training config (the paper's hyper-parameters).

Not a run by itself: the variants (single10, multi42, llm9, wheelzoo, smoke) import it
and override a few fields.  Any field is overridable on the command line, e.g.

  python -m spider_jax.train --config=configs/multi42.py --workdir=runs/m42 \
      --config.bank_dir=/data/bank42 --config.optim.lr=1e-4
"""

import ml_collections


def get_config():
    config = ml_collections.ConfigDict()
    config.bank_dir = ""              # feature bank root (spider_jax.bank layout)
    config.modality = "all"           # "image" | "text" | "all" (one scorer per modality,
                                      # each in WORKDIR/<modality>)
    config.seed = 0
    # A synthetic bank to create in WORKDIR/bank when bank_dir is empty (smoke runs).
    config.synthetic = ml_collections.ConfigDict({"enabled": False})

    # Task sampling (appendix B.1): 2-4 mixed datasets, <= 100 classes, <= 50 per class.
    config.data = ml_collections.ConfigDict()
    config.data.seed = 0
    config.data.num_train_tasks = 832
    config.data.min_datasets = 2
    config.data.max_datasets = 4
    config.data.max_classes = 100
    config.data.examples_per_class = 50

    # RankAgg supervision.
    config.label = ml_collections.ConfigDict()
    config.label.methods = ("hscore", "nce", "leep", "logme")
    config.label.hscore = "auto"      # auto | plain | regularized (see spider_jax.label)
    config.label.chunk_size = 0       # tasks per cached chunk (also the vmap batch); 0: 8 on CPU,
                                      # 32 on GPU/TPU (spider_jax.parallel.DEFAULT_BATCH)
    config.label.cache_dir = ""       # default WORKDIR/labels
    # What the scorer learns to rank (spider_jax.probe; issue 11 item 3): "rankagg" (the
    # paper: Copeland over label.methods), "probe" (linear-probe accuracy of every sampled
    # task, the ground truth's ridge-CV protocol) or "both" (combined by label.combine:
    # "zsum" = (1 - probe_weight) z(rankagg) + probe_weight z(probe), per-task z-scores;
    # "copeland" = Copeland over the RankAgg methods plus the probe as one more vote).
    config.label.supervision = "rankagg"
    config.label.combine = "zsum"
    config.label.probe_weight = 0.5
    config.label.probe_folds = 5
    config.label.probe_seeds = (0,)
    config.label.probe_alphas = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)   # x n_train
    # "auto": the NumPy worker-process kernel on a CPU-only single-process JAX (faster
    # there), else the jitted one; the same protocol and folds either way
    config.label.probe_backend = "auto"

    # Scorer (paper/release: d = 1024, one layer, one head, no FFN, dropout 0.1).
    config.model = ml_collections.ConfigDict()
    config.model.d = 1024
    config.model.num_layers = 1
    config.model.num_heads = 1
    config.model.mlp_dim = 0
    config.model.dropout = 0.1
    config.model.attn_dropout = 0.1
    config.model.use_type_embeddings = True
    config.model.specific_replaces_generic = True
    # Prior + gated residual (spider_jax.model; issue 11 item 4, not the paper): score =
    # learned per-PTM prior + gate(T) * transformer residual; gate_refs reference class
    # centres of the training pool (0 = no gate), gate scale = gate_quantile of the leave-
    # own-dataset-out nearest-centre distance (spider_jax.prior); residual_dropout: share of
    # training tasks scored by the prior alone; residual_l2: penalty on the residual.
    config.model.prior_residual = False
    config.model.gate_refs = 256
    config.model.gate_quantile = 0.9
    config.model.residual_dropout = 0.25
    config.model.residual_l2 = 0.0

    # Seed ensemble (spider_jax.model.SpiderEnsemble): members > 1 trains that many scorers
    # at once (independent inits and dropout, same batches); scores = mean of the members'
    # per-task z-scores; training evaluation also reports each member (seed mean +- sd).
    config.ensemble = ml_collections.ConfigDict()
    config.ensemble.members = 1

    # Adam, lr 2.5e-4 with warm-up then cosine decay to 5e-6.
    config.optim = ml_collections.ConfigDict()
    config.optim.lr = 2.5e-4
    config.optim.end_lr = 5e-6
    config.optim.warmup_fraction = 0.05
    config.optim.weight_decay = 0.0   # > 0 switches adam -> adamw
    config.optim.grad_clip = 0.0      # global-norm clipping, 0 = off

    config.train = ml_collections.ConfigDict()
    config.train.batch_size = 16
    config.train.num_epochs = 30
    config.train.num_steps = 0        # > 0 overrides num_epochs
    config.train.max_specific = 10    # K: per batch k ~ U{0..K} PTMs get specific tokens
    config.train.loss = "listmle"     # listmle (Eq. 4) | listnet | mse
    config.train.log_every = 50
    config.train.eval_every = 500
    config.train.checkpoint_every = 500
    config.train.max_to_keep = 2
    config.train.sleep_per_step = 0.0  # debugging/tests only (kill-and-resume test)

    # Held-out downstream evaluation (tau_w against the bank's groundtruth).
    config.eval = ml_collections.ConfigDict()
    config.eval.max_examples_per_class = 100   # cap per class for task centres and metrics
    config.eval.rerank_k = (0, 3)             # Algorithm 2 budgets reported
    # Hybrid re-ranking (spider_jax.hybrid; issue 11 item 5): at each k > 0 also reorder the
    # k = 0 top-k block by this forward-based metric of those k PTMs ("" = off).
    config.eval.hybrid_metric = ""
    return config
