"""Executing a checked plan: resolve what a spec or a call names (factories, template files, Keras
targets), run the steps through a reader and a sink, verify what landed."""
