"""The Pulumi components of the shared data center, one per domain concept."""

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
]
