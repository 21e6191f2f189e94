"""Scanner raw data files: ISMRMRD v1 and fastMRI .h5 readers and writers, BART cfl."""
