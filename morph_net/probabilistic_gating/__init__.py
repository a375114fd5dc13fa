"""Probabilistic gating (FiGS): a learned Bernoulli gate per channel."""

from morph_net.probabilistic_gating.activation_gating import add_gating_to_fn
from morph_net.probabilistic_gating.activation_gating import gated_batch_norm
from morph_net.probabilistic_gating.activation_gating import gated_relu_activation
from morph_net.probabilistic_gating.activation_gating import logistic_sigmoid_gating
from morph_net.probabilistic_gating.activation_gating import LogisticSigmoidGating

__all__ = [
    'LogisticSigmoidGating', 'add_gating_to_fn', 'gated_batch_norm',
    'gated_relu_activation', 'logistic_sigmoid_gating',
]
