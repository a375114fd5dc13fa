"""PNG bar chart of per-layer widths before and after (e.g. shrink/expand).

  structure_plot.plot_structures({'conv1': 32, ...}, {'conv1': 12, ...},
                                 'widths.png')

One pair of bars per layer (original, new), in the order of `before` (or
`layer_order`), drawn with matplotlib's Agg backend and written atomically.
matplotlib is an optional dependency (the `examples` extra); it is imported
when a plot is drawn.
"""

from typing import Dict, Optional, Sequence

from morph_net import errors
from morph_net.structure import atomic_file

__all__ = ['plot_structures']


def _pyplot():
  """matplotlib.pyplot on the Agg backend."""
  try:
    import matplotlib  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise errors.MissingDependencyError(
        'Drawing a structure needs matplotlib, which is not installed: '
        'pip install matplotlib (or the morph-net[examples] extra).') from e
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def plot_structures(before: Dict[str, int], after: Dict[str, int],
                    path: str, layer_order: Optional[Sequence[str]] = None,
                    title: str = 'Layer widths',
                    labels=('before', 'after')) -> str:
  """Writes a PNG with one bar per layer for `before` and `after`.

  Args:
    before: {layer name: width} of the original structure.
    after: {layer name: width} of the new one (missing layers count as 0).
    path: the PNG file to write.
    layer_order: optional order of the layers (default: `before`'s order,
      then layers only in `after`).
    title: the figure title.
    labels: legend labels of the two series.

  Returns:
    `path`.

  Raises:
    InvalidArgumentError: if there is no layer to plot.
    MissingDependencyError: if matplotlib is not installed.
  """
  names = list(layer_order or list(before) +
               [n for n in after if n not in before])
  if not names:
    raise errors.InvalidArgumentError(
        'Invalid value for argument `before`. Expected at least one layer. '
        'Received: before=%r, after=%r' % (before, after))
  plt = _pyplot()
  x = range(len(names))
  fig, ax = plt.subplots(figsize=(max(6.0, 0.35 * len(names) + 2), 4.5))
  try:
    ax.bar([i - 0.2 for i in x], [before.get(n, 0) for n in names], 0.4,
           label=labels[0], color='#9aa7b8')
    ax.bar([i + 0.2 for i in x], [after.get(n, 0) for n in names], 0.4,
           label=labels[1], color='#2f6db5')
    ax.set_xticks(list(x))
    ax.set_xticklabels(names, rotation=90, fontsize=7)
    ax.set_ylabel('channels')
    ax.set_title(title)
    ax.legend()
    atomic_file.save_figure(fig, path)
  finally:
    plt.close(fig)
  return path
