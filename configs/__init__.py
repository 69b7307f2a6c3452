"""ml_collections configs for spider_jax.train (run from the repository root)."""
