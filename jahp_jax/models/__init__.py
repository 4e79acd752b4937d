"""What a model is: its identity (`config`), transforms, latent codecs, entropy models, the
objective."""
