"""Fact readers: a command that dumps host state machine-readably and a pure parser."""
