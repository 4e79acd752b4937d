"""What lives on disk: checkpoints, images, conversion of other libraries' weights."""
