"""The lowest floor: which Keras and which TF1 layer library are in use.

`compat.keras` picks Keras 3 or tf_keras the way TensorFlow does;
`compat.slim` imports tf_slim, whose layers need tf_keras's legacy layers.
Nothing in this package imports another MorphNet package but `errors`.
"""
