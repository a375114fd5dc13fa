"""Tools: the original's structure exporter and configurable ops (TF1
graphs), and thin command-line programs over the layers below them:
`export_structure` (alive counts of a saved model) and `expand_structure`
(one width multiplier up to a cost)."""

__all__ = ['structure_exporter', 'configurable_ops', 'export_structure',
           'expand_structure']
