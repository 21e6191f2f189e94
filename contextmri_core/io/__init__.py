"""The file boundary: ISMRMRD v1 and fastMRI .h5 readers/writers, BART cfl.

The only layer that imports h5py and ismrmrd. Errors are ``InputFileError`` naming the file.
"""
