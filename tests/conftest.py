"""Shared pytest configuration of the test suite."""


def pytest_collection_modifyitems(config, items):
  """Drops `test_session`, which tf.test.TestCase defines (a deprecated
  context manager, not a test) and pytest would otherwise report as skipped."""
  kept = [item for item in items if item.name != 'test_session']
  if len(kept) != len(items):
    config.hook.pytest_deselected(
        items=[item for item in items if item.name == 'test_session'])
    items[:] = kept
