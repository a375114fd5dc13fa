"""Shared pytest configuration of the test suite, and its markers.

The markers, and which tests carry them, are set here, the one place:

  slow: takes 3 s or more here (measured one file at a time with
    `--durations`), or starts a program; the everyday loop leaves these out:
        python3 -m pytest -q -n 2 -m "not slow" tests
    CI (.ci/run) runs everything. Every test file keeps at least one test
    that is not slow, but for the model zoo (`ALL_SLOW`).
  zoo: the keras.applications model-zoo tests (MORPH_NET_ZOO picks the
    models of tests/surgery/test_rebuild.py's; default ResNet50,MobileNetV2);
    also slow.
  subprocess: starts a Python interpreter or another program.

`MARKED` maps a test file (relative to tests/) to {what: markers}, where
what is '' (the whole file), a test ('test', all its parameters), one
parametrization ('test[id]'), a test class ('Class') or a method
('Class::test'). tests/test_markers.py checks that every entry names a file
and a test that exist, that every file that starts a program is marked
subprocess, and the rule above.
"""

import os

MARKERS = {
    'slow': 'takes long; `-m "not slow"` is the everyday loop (CI runs all).',
    'zoo': 'keras.applications model-zoo tests (MORPH_NET_ZOO picks the '
           'models of surgery/test_rebuild.py; default ResNet50,MobileNetV2).',
    'subprocess': 'starts a Python interpreter or another program.',
}

_S, _P, _Z = 'slow', 'subprocess', 'zoo'

MARKED = {  # bazel_guard: not a read (names of tests, not files opened)
    'compat/test_slim.py': {
        'test_import_slim_builds_slim_nets': (_S,),
    },
    'examples/test_cost_target_benchmark.py': {
        '': (_P, _S),
    },
    'examples/test_fashion_mnist_example.py': {
        '': (_P,),
        'test_example_trains_and_writes_structure': (_S,),
    },
    'examples/test_latency_target.py': {
        '': (_P, _S),
    },
    'examples/test_latency_speedup.py': {
        'test_smoke_runs_every_stage_then_reuses_the_cells': (_P, _S),
    },
    'examples/test_main_job_logs.py': {
        '': (_P, _S),
    },
    'examples/test_results_table.py': {
        'test_smoke_every_stage_of_every_method_then_cached': (_P, _S),
        'test_fashion_mnist_is_resized_for_mobilenet_only': (_S,),
        'test_report_tables_and_plot_data': (_S,),
    },
    'examples/test_run_cycle.py': {
        'test_a_stage_runs_alone': (_P, _S),
        'test_a_stage_without_its_inputs_says_which_to_run': (_P, _S),
        'test_smoke_cycle_writes_every_file': (_P, _S),
    },
    'examples/test_vit_budget.py': {
        'test_one_run_trains_rebuilds_and_is_cached': (_P, _S),
    },
    'framework/test_manager_api.py': {
        'SlimNetsHelperTest::test_failing_subprocess': (_P, _S),
    },
    'framework/test_op_regularizer_manager.py': {
        'GraphShapesTest::test_long_chain_is_fast': (_S,),
    },
    'framework/test_op_vocabulary.py': {
        'test_each_set_is_written_out_once[CALL_OP_TYPES]': (_S,),
    },
    'framework/test_original_module_paths.py': {
        'test_first_import_through_each_form': (_P, _S),
    },
    'framework/test_tf1_slim_inception.py': {
        '': (_P, _S),
    },
    'framework/test_tf1_slim_resnets.py': {
        '': (_P, _S),
    },
    'keras/test_corpus_costs.py': {
        'test_cost_equals_rebuilt_model[activations]': (_S,),
        'test_cost_equals_rebuilt_model[bidirectional_lstm]': (_S,),
        'test_cost_equals_rebuilt_model[channelwise_conv]': (_S,),
        'test_cost_equals_rebuilt_model[conv1d_flatten]': (_S,),
        'test_cost_equals_rebuilt_model[conv3d_pooling]': (_S,),
        'test_cost_equals_rebuilt_model[conv_transpose_1d_3d]': (_S,),
        'test_cost_equals_rebuilt_model[conv_transpose_2d]': (_S,),
        'test_cost_equals_rebuilt_model[crop_and_pad_1d_3d]': (_S,),
        'test_cost_equals_rebuilt_model[crop_and_pad_2d]': (_S,),
        'test_cost_equals_rebuilt_model[dense_on_tokens]': (_S,),
        'test_cost_equals_rebuilt_model[depthwise_1d]': (_S,),
        'test_cost_equals_rebuilt_model[depthwise_2d]': (_S,),
        'test_cost_equals_rebuilt_model[detector_head]': (_S,),
        'test_cost_equals_rebuilt_model[dropouts_and_noise]': (_S,),
        'test_cost_equals_rebuilt_model[elementwise_merges]': (_S,),
        'test_cost_equals_rebuilt_model[grouped_conv]': (_S,),
        'test_cost_equals_rebuilt_model[layer_norm_conv]': (_S,),
        'test_cost_equals_rebuilt_model[lstm_sequences]': (_S,),
        'test_cost_equals_rebuilt_model[mini_unet]': (_S,),
        'test_cost_equals_rebuilt_model[multi_output]': (_S,),
        'test_cost_equals_rebuilt_model[nested_functional]': (_S,),
        'test_cost_equals_rebuilt_model[permute_and_dense]': (_S,),
        'test_cost_equals_rebuilt_model[pooling_2d]': (_S,),
        'test_cost_equals_rebuilt_model[reshape_to_image]': (_S,),
        'test_cost_equals_rebuilt_model[separable_1d]': (_S,),
        'test_cost_equals_rebuilt_model[separable_2d]': (_S,),
        'test_cost_equals_rebuilt_model[sequential]': (_S,),
        'test_cost_equals_rebuilt_model[sequential_head]': (_S,),
        'test_cost_equals_rebuilt_model[shared_layers]': (_S,),
        'test_cost_equals_rebuilt_model[simple_rnn]': (_S,),
        'test_cost_equals_rebuilt_model[squeeze_excite_layer]': (_S,),
        'test_cost_equals_rebuilt_model[upsampling_1d_3d]': (_S,),
        'test_cost_equals_rebuilt_model[upsampling_bilinear]': (_S,),
        'test_cost_equals_rebuilt_model[upsampling_nearest]': (_S,),
    },
    'keras/test_cost_target.py': {
        'test_callback_reaches_and_holds_the_target_in_fit': (_S,),
    },
    'keras/test_distribution_and_legacy_keras.py': {
        '': (_P, _S),
    },
    'keras/test_keep_connected.py': {
        'test_a_dead_chain_layer_keeps_one_channel_and_rebuilds': (_S,),
    },
    'keras/test_keras_ops_models.py': {
        'test_detector_head_rebuilds_with_its_outputs_and_cost': (_S,),
        'test_keras_ops_model_is_pruned_and_round_trips': (_S,),
    },
    'keras/test_layer_kind_costs.py': {
        'test_conv1d_cost_is_the_rebuilt_cost': (_S,),
    },
    'keras/test_layer_kinds.py': {
        'test_declared_op_types_are_what_the_layer_traces_to[Cropping3D]':
            (_S,),
    },
    'keras/test_layer_regularizer.py': {
        'test_imports_do_not_need_tensorflow': (_P,),
        'test_fit_under_data_parallel_on_two_devices': (_P, _S),
        'test_fit_in_two_processes_on_localhost': (_P, _S),
    },
    'keras/test_layer_training.py': {
        'test_fit_logs_the_cost_exports_it_and_the_rebuilt_model_costs_it':
            (_S,),
        'test_the_training_names_do_not_import_tensorflow': (_P,),
    },
    'keras/test_layer_regularizer_corpus.py': {
        'test_layer_level_equals_graph_engine[upsampling_nearest]': (_S,),
        'test_layer_level_equals_graph_engine[upsampling_bilinear]': (_S,),
        'test_layer_level_equals_graph_engine[upsampling_1d_3d]': (_S,),
        'test_layer_level_equals_graph_engine[conv1d_flatten]': (_S,),
        'test_layer_level_equals_graph_engine[dense_on_tokens]': (_S,),
        'test_layer_level_equals_graph_engine[grouped_conv]': (_S,),
        'test_layer_level_equals_graph_engine[channelwise_conv]': (_S,),
        'test_layer_level_equals_graph_engine[bidirectional_lstm]': (_S,),
        'test_layer_level_equals_graph_engine[gru_sequences]': (_S,),
        'test_layer_level_equals_graph_engine[simple_rnn]': (_S,),
        'test_layer_level_equals_graph_engine[lstm_sequences]': (_S,),
        'test_layer_level_equals_graph_engine[attention_block]': (_S,),
        'test_layer_level_equals_graph_engine[conv3d_pooling]': (_S,),
        'test_layer_level_equals_graph_engine[conv_transpose_2d]': (_S,),
        'test_layer_level_equals_graph_engine[conv_transpose_1d_3d]': (_S,),
        'test_layer_level_equals_graph_engine[separable_2d]': (_S,),
        'test_layer_level_equals_graph_engine[separable_1d]': (_S,),
        'test_layer_level_equals_graph_engine[depthwise_2d]': (_S,),
        'test_layer_level_equals_graph_engine[depthwise_1d]': (_S,),
        'test_layer_level_equals_graph_engine[elementwise_merges]': (_S,),
        'test_layer_level_equals_graph_engine[crop_and_pad_2d]': (_S,),
        'test_layer_level_equals_graph_engine[crop_and_pad_1d_3d]': (_S,),
        'test_layer_level_equals_graph_engine[pooling_2d]': (_S,),
        'test_layer_level_equals_graph_engine[reshape_to_image]': (_S,),
        'test_layer_level_equals_graph_engine[dropouts_and_noise]': (_S,),
        'test_layer_level_equals_graph_engine[activations]': (_S,),
        'test_layer_level_equals_graph_engine[layer_norm_conv]': (_S,),
        'test_layer_level_equals_graph_engine[nested_functional]': (_S,),
        'test_layer_level_equals_graph_engine[sequential_head]': (_S,),
        'test_layer_level_equals_graph_engine[sequential]': (_S,),
        'test_layer_level_equals_graph_engine[shared_layers]': (_S,),
        'test_layer_level_equals_graph_engine[multi_output]': (_S,),
        'test_layer_level_equals_graph_engine[mini_unet]': (_S,),
        'test_layer_level_equals_graph_engine[permute_and_dense]': (_S,),
        'test_layer_level_equals_graph_engine[detector_head]': (_S,),
        'test_layer_level_equals_graph_engine[keras_ops]': (_S,),
        'test_layer_level_equals_graph_engine[squeeze_excite_layer]': (_S,),
    },
    'keras/test_model_regularizer.py': {
        'test_export_tool_writes_the_callbacks_json_for_the_same_weights':
            (_P, _S),
    },
    'keras/test_model_zoo.py': {
        '': (_Z, _S),
    },
    'keras/test_multi_worker.py': {
        '': (_P, _S),
    },
    'keras/test_recurrent_units.py': {
        'test_alive_units_and_flops_by_hand': (_S,),
        'test_all_units_alive_keep_todays_cost': (_S,),
        'test_conv1d_reads_the_alive_units': (_S,),
        'test_each_cell_rebuilds_with_the_same_outputs[layer0-1]': (_S,),
        'test_each_cell_rebuilds_with_the_same_outputs[layer1-3]': (_S,),
        'test_each_cell_rebuilds_with_the_same_outputs[layer2-3]': (_S,),
        'test_each_cell_rebuilds_with_the_same_outputs[layer4-8]': (_S,),
        'test_shared_layer_has_one_unit_group': (_S,),
        'test_structure_cost_and_rebuild_agree': (_S,),
    },
    'keras/test_saving.py': {
        '': (_P, _S),
    },
    'latency/test_calibration.py': {
        'test_calibrate_smoke': (_S,),
    },
    'latency/test_measurement.py': {
        'test_old_interleaving_recreates_kernels_and_groups_do_not': (_P, _S),
    },
    'latency/test_variants.py': {
        'test_model_variants_and_copies': (_S,),
    },
    'network_regularizers/test_keras_parity.py': {
        'LegacyKerasTest::test_tf_keras_batch_norm_is_fused': (_P, _S),
    },
    'network_regularizers/test_tf1_slim_networks.py': {
        '': (_P, _S),
    },
    'probabilistic_gating/test_activation_gating.py': {
        'test_tf_keras_legacy_mode': (_P, _S),
    },
    'property/test_random_models.py': {
        'test_random_models': (_S,),
    },
    'surgery/test_nesting.py': {
        'test_a_nested_base_stays_nested': (_S,),
    },
    'surgery/test_rebuild.py': {
        'test_zoo_half_channels': (_Z, _S),
    },
    'surgery/test_rebuild_compiled.py': {
        'test_expansion_of_a_compiled_model': (_S,),
        'test_rebuilt_model_is_compiled_without_morph_net': (_S,),
    },
    'surgery/test_recurrent_rule.py': {
        'test_recurrent_inputs_follow_the_upstream_group[wrap2-kernel_shape2]':
            (_S,),
    },
    'test_docs.py': {
        'test_a_broken_link_anchor_or_docstring_fails_the_strict_build':
            (_P, _S),
        'test_docs_python_block_runs': (_P, _S),
        'test_docs_shell_block_runs': (_P, _S),
        'test_mkdocs_builds_the_site_and_the_reference_strictly': (_P, _S),
    },
    'test_readme.py': {
        'test_main_job_prints_what_the_readme_quotes': (_P, _S),
        'test_readme_python_block_runs': (_P, _S),
        'test_readme_shell_block_runs': (_P, _S),
    },
    'tools/test_calibrate_latency.py': {
        '': (_P,),
        'test_command_line': (_S,),
        'test_usage_errors[args1---batch_size and --repeats must be >= 1.]':
            (_S,),
        'test_usage_errors[args2---model_structures must be >= 0 and --whole_model_share in (0, 1).]':
            (_S,),
    },
    'tools/test_configurable_ops.py': {
        'MissingDependencyTest::test_import_without_tf_slim_or_tf_keras':
            (_P, _S),
    },
    'tools/test_configurable_ops_round_trip.py': {
        'RoundTripTest::test_round_trip_in_tf1_mode': (_P, _S),
    },
    'tools/test_expand_structure.py': {
        '': (_P,),
        'test_command_line': (_S,),
        'test_input_errors_are_one_line_with_status_2': (_S,),
        'test_latency_target_on_a_model_saved_compiled_with_morph_net': (_S,),
        'test_usage_errors[args1---target_cost needs --model.]': (_S,),
    },
    'tools/test_export_structure.py': {
        'test_checkpoint_without_builder_is_a_usage_error': (_P, _S),
        'test_export_from_builder_and_keras_weights_with_input_shape': (_P, _S),
        'test_export_from_keras_file': (_P, _S),
        'test_export_of_a_model_saved_compiled_with_morph_net': (_P, _S),
        'test_help_documents_the_flags_and_exit_status': (_P, _S),
        'test_input_errors_are_one_line_with_status_2': (_P, _S),
        'test_usage_errors': (_P, _S),
    },
    'tools/test_rebuild_model.py': {
        'test_a_structure_that_does_not_fit_is_one_line': (_P, _S),
        'test_an_expanded_structure_copies_only_the_alive_channels': (_P, _S),
        'test_rebuild_from_a_structure_file': (_P, _S),
        'test_rebuild_from_the_models_own_alive_channels': (_P, _S),
        'test_usage_and_input_errors': (_P, _S),
    },
    'tools/test_startup.py': {
        'test_quiet_by_default_and_everything_with_verbosity': (_P, _S),
    },
}

# The GroupLasso, LogisticSigmoid and activation corpus tests take about as
# long as the Gamma one on each model: the same models are slow.
_CORPUS = MARKED['keras/test_layer_regularizer_corpus.py']  # bazel_guard: not a read
for _test in [t for t in _CORPUS
              if t.startswith('test_layer_level_equals_graph_engine[')]:
  for _family in ('group_lasso', 'logistic_sigmoid', 'activation',
                  'group_lasso_activation'):
    _CORPUS['test_%s_%s' % (_family, _test[len('test_'):])] = _CORPUS[_test]

# Test files whose every test is slow: each test starts a program that
# trains or imports TensorFlow anew (or all share one such fixture), or
# builds keras.applications models.
ALL_SLOW = frozenset([  # bazel_guard: not a read (names of tests)
    'examples/test_cost_target_benchmark.py',
    'examples/test_latency_target.py',
    'examples/test_main_job_logs.py',
    'framework/test_tf1_slim_inception.py',
    'framework/test_tf1_slim_resnets.py',
    'keras/test_distribution_and_legacy_keras.py',
    'keras/test_model_zoo.py',
    'keras/test_multi_worker.py',
    'keras/test_saving.py',
    'network_regularizers/test_tf1_slim_networks.py',
])

_TESTS = os.path.dirname(os.path.abspath(__file__))


def pytest_configure(config):
  for name, description in MARKERS.items():
    config.addinivalue_line('markers', '%s: %s' % (name, description))


def keys_of(names):
  """The keys of a file's MARKED entry that can name a test.

  Args:
    names: the parts of its node id after the file (['Class', 'test[id]']).

  Returns:
    ['', 'Class', 'Class::test', 'Class::test[id]'] (a name without '['
    gives one key).
  """
  keys, prefix = [''], ''
  for name in names:
    base = name.split('[', 1)[0]
    keys.append(prefix + base)
    if base != name:
      keys.append(prefix + name)
    prefix += base + '::'
  return keys


def markers_of(path, names):
  """The markers MARKED gives a test.

  Args:
    path: its file, relative to tests/ ('keras/test_saving.py').
    names: the parts of its node id after the file.

  Returns:
    The set of marker names.
  """
  entry = MARKED.get(path, {})
  return set().union(*[entry.get(key, ()) for key in keys_of(names)])


def pytest_collection_modifyitems(config, items):
  """Marks the tests of MARKED, and drops `test_session`.

  tf.test.TestCase defines `test_session` (a deprecated context manager, not
  a test), which pytest would otherwise report as skipped.
  """
  import pytest  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  for item in items:
    path = os.path.relpath(str(item.path), _TESTS).replace(os.sep, '/')
    for marker in sorted(markers_of(path, item.nodeid.split('::')[1:])):
      item.add_marker(getattr(pytest.mark, marker))
  kept = [item for item in items if item.name != 'test_session']
  if len(kept) != len(items):
    config.hook.pytest_deselected(
        items=[item for item in items if item.name == 'test_session'])
    items[:] = kept
