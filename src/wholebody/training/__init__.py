"""Training and evaluation with Lightning: the thin LightningModule, callbacks, and ``train(cfg)``."""
