"""The Pulumi program: one component per domain concept (Site, Segment, Municipality, SharedBase),
each a module of its own, and ``build``, which ``stacks/__main__.py`` calls."""

from .build import build
from .municipality import Municipality, MunicipalityArgs
from .segment import Segment, SegmentArgs
from .shared_base import SharedBase, SharedBaseArgs
from .site import Site, SiteArgs

__all__ = [
    "Municipality",
    "MunicipalityArgs",
    "Segment",
    "SegmentArgs",
    "SharedBase",
    "SharedBaseArgs",
    "Site",
    "SiteArgs",
    "build",
]
