"""Detection: detectors over the sensor's record batches (see ``base`` for the seam)."""

from controller.detect.alert import Alert
from controller.detect.base import Detector, DetectorBase
from controller.detect.stack import REGISTRY, DetectionStack, build, discover, register

__all__ = [
           "REGISTRY",
           "Alert",
           "DetectionStack",
           "Detector",
           "DetectorBase",
           "build",
           "discover",
           "register",
]  # fmt: skip
