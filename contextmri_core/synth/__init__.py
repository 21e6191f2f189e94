"""Physics-based synthetic multi-coil brain scans from one averaged anatomy (MNI152, nilearn).

Simulation, not patient data. A subject is the template warped by a random smooth
deformation, scaled and atrophied for its age (``morphology``); a scan slices it in any plane,
tilt, pixel spacing and thickness (``orientation``, ``render``), turns tissue fractions into
contrast with the sequence's signal equations or domain-randomised intensities (``truth``),
and adds the receive chain and noise (``scan``). ``truth_set`` renders training targets
without k-space.
"""
