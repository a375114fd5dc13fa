"""Model surgery: rebuild a Keras model with the widths of a structure.

Modules, low to high:
  spaces: channel groups (a union-find) and channel spaces (small values).
  layer_cost: the cost hook of a rule (`LayerRule.costed_ops`): the
    multiply-adds of a layer call from its config, for the layer-level
    regularizer that runs on every Keras backend.
  layer_rule: the LayerRule protocol a layer kind implements.
  builtin_rules, layer_rules: rules of the Keras layers; the registry
    (`get_layer_rules`, `register_layer_rule`) for custom layers.
  nesting: nested models as one flat graph; clones keeping the nesting.
  channel_model: ChannelModel, the groups and spaces of one model.
  plan: RebuildPlan, what a structure does to every layer.
  weight_transfer: surviving channels and their weights.
  folding: the constant outputs of removed channels, folded into the
    layers consuming them.
  rebuild: `rebuild.rebuild(model, structure)`, through clone_model.
  configurable_layers: ConfigurableLayers for subclassed models.
"""

from morph_net.surgery.channel_model import analyze
from morph_net.surgery.channel_model import ChannelModel
from morph_net.surgery.configurable_layers import ConfigurableLayers
from morph_net.surgery.configurable_layers import VANISHED
from morph_net.surgery.layer_rule import LayerRule
from morph_net.surgery.layer_rules import get_layer_rules
from morph_net.surgery.layer_rules import LayerRules
from morph_net.surgery.layer_rules import register_layer_rule
from morph_net.surgery.plan import RebuildPlan

__all__ = ['analyze', 'ChannelModel', 'ConfigurableLayers', 'VANISHED',
           'LayerRule', 'LayerRules', 'get_layer_rules',
           'register_layer_rule', 'RebuildPlan']
