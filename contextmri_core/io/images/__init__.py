"""Image files out: PNG contact sheets, NIfTI volumes, ISMRMRD image files."""
