"""MorphNet for TensorFlow 2 and Keras: resource-constrained structure learning."""

__version__ = '0.2.0'
