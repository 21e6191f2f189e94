"""The file and network boundary: ISMRMRD v1 and fastMRI .h5 readers/writers, the ISMRMRD
stream protocol, checkpoints, training shards and their manifest, BART cfl, DICOM writing, PACS push (outbox,
C-ECHO/C-STORE), image outputs (ISMRMRD images, NIfTI, PNG), YAML config files.

The only layer that imports h5py, ismrmrd, pydicom, pynetdicom, safetensors and yaml. Errors
are ``InputFileError`` naming the file.
"""
