"""Dataset loaders: MELD label CSVs, RAVDESS speech clips, and precomputed-feature pickles.

Every loader takes an explicit root (any folder a user downloaded to) and otherwise falls back to
`core.data.paths.default_data_root()`. Nothing here downloads anything.
"""
