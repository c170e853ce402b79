"""The command-line verbs beyond `run`: ad-hoc comparison and inspection of model files."""
