"""Head-crop training data: `inputs` (the clips and their identities and splits), `export` (`depix prepare`:
detect, track, crop and encode), `state` (the index of a dataset being written, resume), `config`
(PrepareConfig) and `crops` (`read_index`, `load_crops`: the dataset read back for training and evaluation)."""
