"""The ISMRMRD (MRD) stream protocol: frames, sockets, images out, Gadgetron buffers."""
