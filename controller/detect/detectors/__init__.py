"""Built-in detectors: every module here is imported by ``controller.detect.discover`` and
registers its classes with ``@register``."""
