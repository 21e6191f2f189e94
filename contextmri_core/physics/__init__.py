"""Physics of Cartesian multi-coil MRI in torch (complex64, batch-first, any device).

FFTs, linear operators with forward/adjoint/normal, Hermitian batched CG, ESPIRiT coil maps,
noise prewhitening, MVUE images and their normalisation, and sampling masks.
"""
