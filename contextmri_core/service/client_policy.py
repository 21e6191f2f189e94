"""What a stream *client* may choose: reconstruction parameters within the server's bounds.

The stream server's own settings (its command line) decide everything that names a path, a
host or a device: the model, the device, the PACS and our AE title, the outbox. A client's
config message (pipeline ``<property>`` entries, FIRE JSON parameters) may only choose the
reconstruction: method, steps, guidance, ensemble, batch size, seed, ... and only within the
limits the server sets. A forbidden property, or a value out of bounds, is a
:class:`ForbiddenSetting` naming it (the server answers with an ERROR and no reconstruction).
Empty values mean "the server's setting". The Gadgetron gadgets do not use this policy: their
properties are the site's own pipeline XML.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Optional

from contextmri_core.errors import ConfigError, check_fields
from contextmri_core.recon.stream import StreamSettings

#: Settings only the server's command line may set (paths, hosts, devices).
SERVER_ONLY = ("model", "device", "pacs", "calling_aet", "outbox")
#: Settings a client may choose (within :class:`ClientPolicy`'s bounds).
CLIENT_FIELDS = ("method", "steps", "guidance", "seed", "batch_size", "ensemble", "anatomy",
                 "phase", "prewhiten", "fallback", "repetition", "virtual_coils",
                 "time_budget_s")


class ForbiddenSetting(ConfigError):
    """A client asked for a server-side setting or a value outside the server's bounds."""


def _name(raw: Any) -> str:
    return str(raw).replace("-", "_").lower()


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


@dataclass(frozen=True)
class ClientPolicy:
    """The bounds of what a client may ask for (server flags ``--max-steps`` ...)."""

    max_steps: int = 100
    max_ensemble: int = 4
    max_batch_size: int = 16
    max_guidance: float = 10.0
    max_time_budget_s: Optional[float] = None  # None: no bound beyond the session limit

    def __post_init__(self) -> None:
        check_fields(self, [
            ("max_steps", self.max_steps >= 1, "use >= 1"),
            ("max_ensemble", self.max_ensemble >= 1, "use >= 1"),
            ("max_batch_size", self.max_batch_size >= 1, "use >= 1"),
            ("max_guidance", math.isfinite(self.max_guidance) and self.max_guidance >= 0,
             "use a finite number >= 0"),
        ])

    def settings(self, props: Mapping[str, Any], base: StreamSettings) -> StreamSettings:
        """``base`` (the server's settings) with the client's ``props`` applied; raises
        :class:`ForbiddenSetting` naming the first property a client may not set."""
        chosen = {k: v for k, v in props.items() if not _empty(v)}
        for raw in chosen:
            if _name(raw) in SERVER_ONLY:
                raise ForbiddenSetting(
                    f"property {raw!r} is a server-side setting: a client may not set it "
                    f"(a client may choose {', '.join(CLIENT_FIELDS)})")
        settings = StreamSettings.from_properties(chosen, base)
        given = {_name(k) for k in chosen}
        for field_name, ok, bound in self._bounds(settings):
            if field_name in given and not ok:
                raise ForbiddenSetting(f"property {field_name!r}="
                                       f"{getattr(settings, field_name)!r} is outside the "
                                       f"server's bounds ({bound})")
        return settings

    def _bounds(self, s: StreamSettings):
        budget = s.time_budget_s
        # steps and guidance may be None: the model's preset chooses them (within the bounds)
        return (
            ("steps", s.steps is None or 1 <= s.steps <= self.max_steps, f"1..{self.max_steps}, --max-steps"),
            ("ensemble", 1 <= s.ensemble <= self.max_ensemble,
             f"1..{self.max_ensemble}, --max-ensemble"),
            ("batch_size", 1 <= s.batch_size <= self.max_batch_size,
             f"1..{self.max_batch_size}, --max-batch-size"),
            ("guidance", s.guidance is None or (math.isfinite(s.guidance)
                                                and 0 <= s.guidance <= self.max_guidance),
             f"0..{self.max_guidance:g}, --max-guidance"),
            ("seed", 0 <= s.seed < 2 ** 63, "0..2**63-1"),
            ("time_budget_s", budget is None or (math.isfinite(budget) and (
                self.max_time_budget_s is None or budget <= self.max_time_budget_s)),
             f"at most {self.max_time_budget_s} s, the session time limit"),
        )
