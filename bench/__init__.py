"""msabench: one runner, one protocol, for multimodal sentiment analysis benchmarks."""

__version__ = "0.1.0"
