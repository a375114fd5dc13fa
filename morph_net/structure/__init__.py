"""Structure files: {layer or op name: width} as JSON, written atomically.

Below both the Keras bridge and the model-surgery tools: nothing here imports
a Keras model or a graph analysis.
"""
