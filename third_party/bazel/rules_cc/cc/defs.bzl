"""Stub of @rules_cc//cc:defs.bzl that forwards to Bazel's native rules.

Used only through `--override_repository=rules_cc=...` (the `offline`
config in .bazelrc) so that Bazel 4.2.3 never downloads rules_cc.
"""

def cc_library(**attrs):
    native.cc_library(**attrs)

def cc_binary(**attrs):
    native.cc_binary(**attrs)

def cc_test(**attrs):
    native.cc_test(**attrs)

def cc_toolchain(**attrs):
    native.cc_toolchain(**attrs)

def cc_toolchain_suite(**attrs):
    native.cc_toolchain_suite(**attrs)

def cc_proto_library(**attrs):
    native.cc_proto_library(**attrs)

def objc_library(**attrs):
    native.objc_library(**attrs)

def cc_import(**attrs):
    native.cc_import(**attrs)
