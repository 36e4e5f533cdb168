"""Hydra configs (the top-level ``conf/`` is a link to this folder); found as ``pkg://wholebody.conf``."""
