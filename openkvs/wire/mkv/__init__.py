"""EBML and Matroska: primitives, a sans-I/O push reader, and the few elements we look inside."""
