"""Samplers: pure step math (DDIM, CFG) and loops (DDS, DPS, ensembles) that compose a
denoiser, a noise schedule and a data-consistency step handed in as plain callables."""
