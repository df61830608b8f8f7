"""lgcloud: the municipal joint-use data center declared in Pulumi.<stack>.yaml."""

import pulumi

from lgcloud.model.config import from_pulumi_config
from lgcloud.program import build

build(from_pulumi_config(pulumi.get_stack()))
