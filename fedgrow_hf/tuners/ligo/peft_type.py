"""Adds ``LIGO`` to PEFT's ``PeftType`` enum.

PEFT keys its config/tuner mappings by ``PeftType`` members and ``register_peft_method`` only accepts
names that the enum already has. The enum is closed, so the member is added the way ``enum`` itself
adds members; it is a ``str`` enum, so ``"LIGO"`` read back from ``adapter_config.json`` finds it.
"""

from __future__ import annotations

from peft.utils import PeftType


def _add_member(name: str) -> PeftType:
    if name in PeftType.__members__:
        return PeftType[name]
    member = str.__new__(PeftType, name)
    member._name_ = name
    member._value_ = name
    type.__setattr__(PeftType, name, member)
    PeftType._member_map_[name] = member
    PeftType._value2member_map_[name] = member
    PeftType._member_names_.append(name)
    return member


LIGO_PEFT_TYPE: PeftType = _add_member("LIGO")
