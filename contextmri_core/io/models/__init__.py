"""Model files: our checkpoints, the published ContextMRI layout, training shards."""
