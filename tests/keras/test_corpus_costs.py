"""Differential test: get_cost() equals an independent count of the rebuilt model.

For every model of `morph_net.testing.keras_corpus` and three seeded random
dead-channel patterns, the FLOP and model-size costs the regularizer reports
must equal the FLOPs (TensorFlow's op statistics, layer configs where the
trace hides the arithmetic) and kernel weights of
`rebuild(model, alive_counts())`, counted by `reference_cost`, which shares
no code with the analysis.
"""

import keras
import pytest

from morph_net import keras as morph_keras
from morph_net.network_regularizers import flop_regularizer
from morph_net.network_regularizers import model_size_regularizer
from morph_net.testing import dead_channels
from morph_net.testing import keras_corpus
from morph_net.testing import reference_cost
from morph_net.surgery import rebuild

# Models whose cost is known to be wrong today, with the reason. Strict: a
# model that starts passing must leave this list.
KNOWN_WRONG = {}

_FAMILIES = {
    # seed -> (regularizer family, how channels die)
    0: ('group_lasso', dead_channels.zero_filters),
    1: ('gamma', dead_channels.zero_gammas),
    2: ('group_lasso', dead_channels.zero_filters),
}
_CLASSES = {
    'group_lasso': (flop_regularizer.GroupLassoFlopsRegularizer,
                    model_size_regularizer.GroupLassoModelSizeRegularizer,
                    {'threshold': 1e-6}),
    'gamma': (flop_regularizer.GammaFlopsRegularizer,
              model_size_regularizer.GammaModelSizeRegularizer,
              {'gamma_threshold': 1e-6}),
}


def _has_batch_norm(model):
  return any(isinstance(l, keras.layers.BatchNormalization) for l in
             model._flatten_layers(include_self=False, recursive=True))  # pylint: disable=protected-access


def _params():
  for name in keras_corpus.names():
    for seed in sorted(_FAMILIES):
      marks = []
      if (name, seed) in KNOWN_WRONG or name in KNOWN_WRONG:
        marks.append(pytest.mark.xfail(
            strict=True, reason=KNOWN_WRONG.get((name, seed),
                                                KNOWN_WRONG.get(name))))
      yield pytest.param(name, seed, marks=marks, id='%s-%d' % (name, seed))


@pytest.mark.parametrize('name,seed', list(_params()))
def test_cost_equals_rebuilt_model(name, seed):
  keras.backend.clear_session()
  model = keras_corpus.get(name).build()
  family, kill = _FAMILIES[seed]
  if family == 'gamma' and not _has_batch_norm(model):
    family, kill = 'group_lasso', dead_channels.zero_filters
  kill(model, seed=seed)
  flops_class, size_class, kwargs = _CLASSES[family]

  flops = morph_keras.ModelRegularizer(model, flops_class, **kwargs)
  structure = flops.alive_counts()
  rebuilt = rebuild.rebuild(model, structure)
  assert float(flops.cost()) == reference_cost.reference_flops(rebuilt)

  size = morph_keras.ModelRegularizer(model, size_class, **kwargs)
  assert size.alive_counts() == structure
  assert float(size.cost()) == reference_cost.reference_weights(rebuilt)
