"""Input pipelines (tfds + tf.data) and where data lives."""
