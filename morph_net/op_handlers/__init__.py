"""Op handlers: how each op type groups channels, and the handler registry."""
