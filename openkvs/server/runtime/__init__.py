"""Each stream's runtime: the one owner of its publisher, live edge, readers and numbering."""
