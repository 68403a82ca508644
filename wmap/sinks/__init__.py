"""Where a plan's values land: one sink per kind of target (torch model, Keras model, file)."""
