"""Physics-based synthetic multi-coil brain scans from one averaged anatomy (MNI152, nilearn).

Simulation, not patient data: tissue maps + relaxation times + sequence signal equations.
"""
