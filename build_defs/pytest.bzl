"""pytest_test: a py_test that runs one test file under pytest."""

def pytest_test(name, src, deps = [], data = [], args = [], **kwargs):
    """Declares a py_test running `src` with pytest.

    Args:
      name: target name (usually src without ".py").
      src: the test file, e.g. "test_flop_regularizer.py".
      deps: extra py_library deps (//morph_net is always added).
      data: extra runfiles (conftest.py files, test data).
      args: extra pytest arguments, after the test file.
      **kwargs: passed to py_test (size, timeout, tags, shard_count, ...).
    """
    native.py_test(
        name = name,
        srcs = [src, "//build_defs:pytest_main.py"],
        main = "//build_defs:pytest_main.py",
        args = ["$(rootpath %s)" % src] + args,
        python_version = "PY3",
        srcs_version = "PY3",
        deps = depset(["//morph_net"] + deps).to_list(),
        data = data + ["//:pytest_config"],
        **kwargs
    )

def pytest_tests(srcs, deps = [], data = [], size = "medium", **kwargs):
    """One pytest_test per file in srcs, named after the file."""
    for src in srcs:
        pytest_test(
            name = src[:-len(".py")],
            src = src,
            deps = deps,
            data = data,
            size = size,
            **kwargs
        )

def pytest_directory(parent_support = "//tests:test_support", shards = {},
                     extra_support_deps = [], reads = {}, size = "large"):
    """The BUILD of one tests/ subdirectory.

    Declares `:test_support` (conftest.py, helper modules and data files of
    the directory, plus the parent's) and one pytest_test per test_*.py file,
    so new test files are picked up automatically.

    Args:
      parent_support: the test_support target of the directory above
        (None for tests/ itself).
      shards: {test file: shard count} for slow files.
      extra_support_deps: more py_library deps of the helpers.
      reads: {test file: [labels]}, the repository files outside tests/ that
        a test opens, runs or imports (README.md, docs, examples, ...), e.g.
        {"test_readme.py": ["//:docs", "//examples"]}. They are added to that
        test's runfiles only. tests/bazel/test_bazel_build.py fails when a test
        reads a repository file its target does not carry.
      size: Bazel test size of every test.
    """
    for src in reads:
        if src not in native.glob([src], allow_empty = True):
            fail("pytest_directory(reads=...): no test file %s" % src)
    native.py_library(
        name = "test_support",
        srcs = native.glob(["*.py"], exclude = ["test_*.py"],
                           allow_empty = True),
        data = native.glob(
            ["**"],
            exclude = ["**/*.py", "**/*.pyc", "**/BUILD",
                       "**/__pycache__/**"],
            allow_empty = True,
        ),
        deps = ([parent_support] if parent_support else []) +
               extra_support_deps,
    )
    for src in native.glob(["test_*.py"], allow_empty = True):
        pytest_test(
            name = src[:-len(".py")],
            src = src,
            size = size,
            shard_count = shards.get(src, 1),
            deps = [":test_support"],
            data = reads.get(src, []),
        )
