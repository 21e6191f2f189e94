"""Offline training of the conditioned prior: ``prepare`` raw scans into shards, ``fit`` the
prior (one CPU, or many GPUs/nodes through torchrun), ``finetune``, ``evaluate``.

The data path streams: ``sampler`` (which slices each rank trains on, per epoch), ``data`` (a
dataset of lazily read, patch-sized samples), ``augment`` (physical augmentations),
``loader`` (DataLoader workers, device prefetch); ``trainer`` runs the steps with ``draws``
(per-sample randomness), ``validation``, ``metrics`` and ``warm_start``.

Everything physical (MVUE, coil maps, masks, metadata, prompts) comes from ``contextmri_core``
so training and inference cannot drift apart. Run as ``python -m training.<command> --help``.
"""
