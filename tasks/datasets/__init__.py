"""Dataset readers: one module per published file format, plus the no-code user format."""
