"""jaxprotect: face-privacy protection (CLIP2Protect, TIP-IM, FaceCloak and noise baselines) in JAX.

Images inside jaxprotect are NHWC float32. Each public function says which value range it
expects; the face recognisers take [-1, 1], photos on disk are uint8 RGB.
"""
from jaxprotect.registry import NETWORK_NAMES, load_network

__all__ = ["load_network", "NETWORK_NAMES"]
__version__ = "0.1.0"
