"""Feature extraction: handcrafted families, CNN embeddings, cache and tables."""
