"""edgeport: recipes that take a trained model to TFLite and ONNX and gate the release on parity."""

__version__ = "0.1.0"
