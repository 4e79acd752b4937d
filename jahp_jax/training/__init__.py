"""Training: the train step, the loop, checkpointing, multi-process start-up."""
