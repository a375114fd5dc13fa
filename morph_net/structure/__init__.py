"""Structures {layer or op name: width}: files, the width multiplier, plots.

Below both the Keras bridge and model surgery: nothing here imports a Keras
model or a graph analysis. Modules: `structure_files` (JSON read/write),
`atomic_file` (atomic writes), `width_multiplier` (scale a structure, or
search the multiplier reaching a cost given as a function), `structure_plot`
(PNG bar chart of two structures).
"""

__all__ = ['structure_files', 'atomic_file', 'width_multiplier',
           'structure_plot']
