"""Differential test: get_cost() equals an independent count of the rebuilt model.

For every model of `morph_net.testing.keras_corpus` and three seeded random
dead-channel patterns, the FLOP and model-size costs the regularizer reports
must equal the FLOPs (TensorFlow's op statistics, layer configs where the
trace hides the arithmetic) and kernel weights of
`rebuild(model, alive_counts())`, counted by `reference_cost`, which shares
no code with the analysis.

One test per model: the model is built and traced once, and each regularizer
is built once on that trace; they read the live variables, so each seed only
resets the weights, kills channels and reads the regularizers again.
"""

import keras
import pytest

from morph_net import keras as morph_keras
from morph_net.keras import regularizable
from morph_net.keras import tracing
from morph_net.network_regularizers import flop_regularizer
from morph_net.network_regularizers import model_size_regularizer
from morph_net.surgery import channel_model
from morph_net.surgery import rebuild
from morph_net.testing import dead_channels
from morph_net.testing import keras_corpus
from morph_net.testing import reference_cost

# Models whose cost is known to be wrong today, with the reason. Strict: a
# model that starts passing must leave this dict.
KNOWN_WRONG = {}

_SEEDS = {
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


def _narrowable(model):
  """Width-taking layers whose width rebuild can change."""
  channels = channel_model.analyze(model)
  return set(channels.source_layers()) - set(
      regularizable.fixed_width_layers(channels))


def corpus_mismatches(name):
  """Runs the differential check on corpus model `name`, every seed.

  Returns:
    A list of mismatch descriptions (empty when every cost is right).
  """
  keras.backend.clear_session()
  model = keras_corpus.get(name).build()
  initial = model.get_weights()
  traced = tracing.TracedModel(model)
  regularizers = {}
  problems = []
  for seed, (family, kill) in sorted(_SEEDS.items()):
    if family == 'gamma' and not _has_batch_norm(model):
      family, kill = 'group_lasso', dead_channels.zero_filters
    if family not in regularizers:
      flops_class, size_class, kwargs = _CLASSES[family]
      regularizers[family] = (
          morph_keras.ModelRegularizer(traced, flops_class, **kwargs),
          morph_keras.ModelRegularizer(traced, size_class, **kwargs))
    flops, size = regularizers[family]
    model.set_weights(initial)
    kill(model, seed=seed)
    structure = flops.alive_counts()
    if family == 'group_lasso':
      # Every layer rebuild can narrow is regularized (listed), else the
      # equality below would hold only because nothing changed.
      missing = sorted(_narrowable(model) - set(structure))
      if missing:
        problems.append('seed %d: layers rebuild can narrow are not '
                        'regularized by group lasso: %s' % (seed, missing))
    rebuilt = rebuild.rebuild(model, structure)
    got = (float(flops.cost()), float(size.cost()))
    want = (reference_cost.reference_flops(rebuilt),
            reference_cost.reference_weights(rebuilt))
    if size.alive_counts() != structure:
      problems.append('seed %d: alive counts differ between FLOPs %s and '
                      'model size %s' % (seed, structure, size.alive_counts()))
    if got != want:
      problems.append('seed %d (%s): (FLOPs, weights) %s, rebuilt model %s; '
                      'structure %s' % (seed, family, got, want, structure))
  return problems


def _params():
  for name in keras_corpus.names():
    marks = []
    if name in KNOWN_WRONG:
      marks.append(pytest.mark.xfail(strict=True, reason=KNOWN_WRONG[name]))
    yield pytest.param(name, marks=marks, id=name)


@pytest.mark.parametrize('name', list(_params()))
def test_cost_equals_rebuilt_model(name):
  problems = corpus_mismatches(name)
  assert not problems, '\n'.join(problems)
