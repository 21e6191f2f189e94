"""The conditioned diffusion prior: UNet presets, condition encoders (metadata ->
``encoder_hidden_states``), the DDPM noise schedule, and checkpoints that carry all three.

Complex images enter the network as 2 real channels (real, imag) only here, at its boundary.
"""
