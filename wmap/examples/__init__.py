"""Small example models named by the example specs (`wmap.examples.models:keras_cnn`)."""
