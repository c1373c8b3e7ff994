"""Files: FITS names in every form surveys use (:mod:`.names`), what a file is (:mod:`.products`), its chips
in electrons with their ignore masks (:mod:`.fits`), the cleaned copy (:mod:`.writer`), Zarr groups
(:mod:`.zarr`) and object stores (:mod:`.remote`). Knows the models (each camera's default) but not how
images are cleaned."""
