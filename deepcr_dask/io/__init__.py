"""Readers and writers: FITS in and out (:mod:`.fits`), Zarr stores (:mod:`.zarr`)."""
