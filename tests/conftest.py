"""Shared pytest configuration of the test suite, and its markers.

Markers (registered here, the one place):
  slow: takes long (measured with --durations); the everyday loop leaves
    these out:  python3 -m pytest -q -n 2 -m "not slow" tests
    CI (.ci/run) runs everything.
  zoo: keras.applications models (set MORPH_NET_ZOO to pick them; default
    ResNet50,MobileNetV2); also slow.
  subprocess: starts a Python interpreter or another program.
"""

MARKERS = {
    'slow': 'takes long; `-m "not slow"` is the everyday loop (CI runs all).',
    'zoo': 'keras.applications models (set MORPH_NET_ZOO to pick them; '
           'default ResNet50,MobileNetV2).',
    'subprocess': 'starts a Python interpreter or another program.',
}


def pytest_configure(config):
  for name, description in MARKERS.items():
    config.addinivalue_line('markers', '%s: %s' % (name, description))


def pytest_collection_modifyitems(config, items):
  """Drops `test_session`, which tf.test.TestCase defines (a deprecated
  context manager, not a test) and pytest would otherwise report as skipped."""
  kept = [item for item in items if item.name != 'test_session']
  if len(kept) != len(items):
    config.hook.pytest_deselected(
        items=[item for item in items if item.name == 'test_session'])
    items[:] = kept
