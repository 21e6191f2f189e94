"""Reconstruction apps with one signature: (kspace, mask, maps, metadata) -> ReconResult."""
