"""The layer-rule registry: Keras layer class -> `LayerRule`.

Model surgery (the channel model, the rebuild plan, weight transfer and
structure costing) looks every layer up in one `LayerRules` table. The
built-in Keras layers are registered by class (`builtin_rules`), and so
are the `keras.ops` operations a functional model records (`op_rules`); a
layer class inherits the rule of its nearest registered ancestor.

A custom layer gets a rule in one of two ways:

    # For every analysis in the process:
    layer_rules.register_layer_rule(MyScale, builtin_rules.PassThroughRule())

    # For one analysis only (the global table is not changed):
    rules = layer_rules.get_layer_rules()
    rules.register(MyConv, builtin_rules.WidthRule('filters'))
    rebuild.rebuild(model, structure, layer_rules=rules)
"""

from typing import Dict, List, Optional

from morph_net import errors
from morph_net.surgery import builtin_rules
from morph_net.surgery import layer_rule
from morph_net.surgery import op_rules

__all__ = ['LayerRules', 'get_layer_rules', 'register_layer_rule']

_OPAQUE = builtin_rules.OpaqueRule()


class LayerRules(object):
  """A table {layer class: LayerRule}, looked up along the class hierarchy.

  Args:
    rules: the initial {layer class: rule} entries (copied).

  Raises:
    InvalidArgumentError: for an entry that is not a class and a LayerRule.
  """

  def __init__(self, rules: Optional[Dict[type, layer_rule.LayerRule]] = None,
               named_rules: Optional[Dict[str, layer_rule.LayerRule]] = None):
    self._rules = {}
    self._named = {}
    for layer_class, rule in (rules or {}).items():
      self.register(layer_class, rule)
    for name, rule in (named_rules or {}).items():
      self.register_by_name(name, rule)

  def register(self, layer_class: type, rule: layer_rule.LayerRule) -> None:
    """Makes `rule` the rule of `layer_class` (and of its subclasses).

    Args:
      layer_class: a Keras layer class.
      rule: a `LayerRule` instance.

    Raises:
      InvalidArgumentError: if `layer_class` is not a class or `rule` is not
        a LayerRule.
    """
    if not isinstance(layer_class, type):
      raise errors.InvalidArgumentError(
          'Invalid value for argument `layer_class`. Expected a Keras layer '
          'class. Received: layer_class=%r (%s)' %
          (layer_class, type(layer_class).__name__))
    if not isinstance(rule, layer_rule.LayerRule):
      raise errors.InvalidArgumentError(
          'Invalid value for argument `rule` of layer class %s. Expected an '
          'instance of morph_net.surgery.layer_rule.LayerRule. Received: '
          'rule=%r (%s)' % (layer_class.__name__, rule, type(rule).__name__))
    self._rules[layer_class] = rule

  def register_by_name(self, qualified_name: str,
                       rule: layer_rule.LayerRule) -> None:
    """Makes `rule` the rule of the class called `qualified_name`.

    The class's module is not imported: a layer whose class (or an
    ancestor) has that `builtin_rules.qualified_name` gets the rule. A rule
    registered by class wins over one registered by name for the same
    class.

    Args:
      qualified_name: 'module.ClassName'.
      rule: a `LayerRule` instance.

    Raises:
      InvalidArgumentError: if `qualified_name` is not a dotted string or
        `rule` is not a LayerRule.
    """
    if not isinstance(qualified_name, str) or '.' not in qualified_name:
      raise errors.InvalidArgumentError(
          'Invalid value for argument `qualified_name`. Expected '
          "'module.ClassName' of a Keras layer class. Received: "
          'qualified_name=%r' % (qualified_name,))
    if not isinstance(rule, layer_rule.LayerRule):
      raise errors.InvalidArgumentError(
          'Invalid value for argument `rule` of layer class %s. Expected an '
          'instance of morph_net.surgery.layer_rule.LayerRule. Received: '
          'rule=%r (%s)' % (qualified_name, rule, type(rule).__name__))
    self._named[qualified_name] = rule

  def find(self, layer) -> Optional[layer_rule.LayerRule]:
    """The registered rule of a layer (or layer class), or None."""
    layer_class = layer if isinstance(layer, type) else type(layer)
    for cls in layer_class.__mro__:
      rule = self._rules.get(cls)
      if rule is None and self._named:
        rule = self._named.get(builtin_rules.qualified_name(cls))
      if rule is not None:
        return rule
    return None

  def get(self, layer) -> layer_rule.LayerRule:
    """The rule of a layer; an opaque rule for unregistered layers."""
    rule = self.find(layer)
    return _OPAQUE if rule is None else rule

  def copy(self) -> 'LayerRules':
    """An independent copy: registering in it leaves this table unchanged."""
    return LayerRules(self._rules, self._named)

  def width_layer_names(self) -> List[str]:
    """Sorted class names of the layers whose width a structure chooses."""
    return sorted(set(cls.__name__ for cls, rule in self._rules.items()
                      if rule.width_attribute) |
                  set(name.rsplit('.', 1)[-1]
                      for name, rule in self._named.items()
                      if rule.width_attribute))


# MorphNet's own layers by name: surgery does not import their modules
# (which need TensorFlow).
_DEFAULT_RULES = LayerRules(
    {**builtin_rules.keras_rule_table(),
     **op_rules.op_rule_table()},
    builtin_rules.named_rule_table())


def get_layer_rules() -> LayerRules:
  """A fresh copy of the default table (built-ins plus global registrations).

  Register rules in the copy to change one analysis only.
  """
  return _DEFAULT_RULES.copy()


def register_layer_rule(layer_class: type,
                        rule: layer_rule.LayerRule) -> None:
  """Registers `rule` for `layer_class` in the default table of the process.

  Every later analysis that is not given its own table uses it.

  Raises:
    InvalidArgumentError: as `LayerRules.register`.
  """
  _DEFAULT_RULES.register(layer_class, rule)
