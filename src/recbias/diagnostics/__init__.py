"""Diagnostics of LLM recommenders: item groupings, token-level IG analysis, training curves,
attribution and sensitivity. Import the submodules directly (``recbias.diagnostics.groups`` ...)."""
