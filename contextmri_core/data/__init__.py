"""Plain data shared by every layer: scan metadata, header parsing, prompts, k-space containers.

Pure Python/numpy: no file access, no torch.
"""
