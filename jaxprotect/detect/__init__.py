"""Face detection (MTCNN) and alignment: find faces in a photo, crop or align them, paste them back."""
from jaxprotect.detect.mtcnn import MTCNN, Detections, load_mtcnn

__all__ = ["MTCNN", "Detections", "load_mtcnn"]
