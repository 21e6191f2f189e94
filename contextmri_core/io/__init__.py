"""The file and network boundary, one subpackage per thing it talks to:

- ``raw``: scanner raw data files (ISMRMRD v1 and fastMRI .h5 readers/writers, BART cfl);
- ``mrd``: the ISMRMRD (MRD) stream protocol (frames, the listening socket, images out,
  Gadgetron buffers and gadgetron-python quirks);
- ``dicom``: DICOM files and the PACS (writer, value encoding, on-disk outbox, C-ECHO/C-STORE);
- ``models``: model files (our checkpoints, the published ContextMRI layout, training shards
  and their manifest);
- ``images``: image files out (PNG contact sheets, NIfTI volumes, ISMRMRD image files);
- ``config_file``: YAML settings files;
- ``publish``: output folders that are complete or absent (staging, rename, stale cleanup).

The only layer that imports h5py, ismrmrd, pydicom, pynetdicom, safetensors, yaml, nibabel, PIL
and socket. Errors are ``InputFileError`` naming the file.
"""
