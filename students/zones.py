"""Which IANA time zone names a district, the scheduler or a command may use.

``zoneinfo`` loads any name its database holds, including two that are no place's civil
time: ``localtime`` is whatever the server's /etc/localtime says (it moves with the host,
so the same district's 07:00 job would run at another hour after a migration) and
``Factory`` is tzdata's placeholder for "zone not set" (UTC with the abbreviation "-00").
Anything outside ``zoneinfo.available_timezones()`` is refused as well: a path such as
``posix/America/New_York`` loads on some hosts and not on others.

Plain Python (no models), so settings can check their zone before Django is set up;
``students.models.validate_time_zone`` applies the same rule to a district.
"""
from __future__ import annotations

import functools
import zoneinfo

NOT_A_PLACE = frozenset({"localtime", "Factory"})


@functools.cache
def usable_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones()) - NOT_A_PLACE


def zone_problem(name) -> str | None:
    """None when ``name`` is a usable zone; otherwise one line saying why not."""
    if isinstance(name, str) and name in usable_zones():
        return None
    if name in NOT_A_PLACE:
        return f"{name!r} is not an IANA time zone of a place (for example America/New_York)"
    return f"{name!r} is not an IANA time zone (for example America/New_York)"
