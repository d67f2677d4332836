"""Face detection (MTCNN) and alignment: find faces in a photo, crop or align them, paste them back."""
from jaxprotect.detect.align import Crop, align_face, box_crop, paste_back, template
from jaxprotect.detect.mtcnn import MTCNN, Detections, load_mtcnn

__all__ = ["MTCNN", "Detections", "load_mtcnn", "Crop", "align_face", "box_crop", "paste_back",
           "template"]
