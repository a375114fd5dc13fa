"""Tools: structure export and (re)building networks from structures."""
