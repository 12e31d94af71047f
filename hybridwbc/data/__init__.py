"""Data layer: manifests of image files, image reading, splits, synthetic data and checks."""
