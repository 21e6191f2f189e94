"""Model files: our checkpoints, the published ContextMRI release (``MRI_checkpoint/``), model
cards read from config files alone, training shards."""
