"""Offline training of the conditioned prior: ``prepare`` raw scans into shards, ``fit`` the
prior (one CPU, or many GPUs/nodes through torchrun), ``finetune``, ``evaluate``.

Everything physical (MVUE, coil maps, masks, metadata, prompts) comes from ``contextmri_core``
so training and inference cannot drift apart. Run as ``python -m training.<command> --help``.
"""
