"""Probes of the four bias channels of transformer generative recommenders ("LLM Biases", §4).

Each channel has a typed config (``recbias.probes.config``) and one entry point that writes
``config.toml``, ``environment.json``, ``metrics.json`` and a PNG figure into a run directory:

    from recbias.probes.runner import load_probe_config, run_probe
    cfg = load_probe_config("synthetic", Path("configs/probe_synthetic.toml"))
    metrics = run_probe("synthetic", cfg, Path("runs/probe_synthetic"))

Channels: ``positional`` (Prop. 4.1), ``popularity`` (Prop. 4.4), ``latent`` (Prop. 4.5),
``synthetic`` (Prop. 4.6). The isolated-head experiments need no data; trained-model parts use
``recbias.genrec`` (positional, latent) or any exact scorer (popularity).
"""
