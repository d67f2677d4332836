"""Networks ported from the original PyTorch code, one module per family."""
