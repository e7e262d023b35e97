"""Alert texts: one UCS-2 segment in Chinese, one GSM-7 segment in English, local time, the reply hint."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from alertd.core.incidents import Incident, State
from alertd.core.messages import GSM7_SEGMENT, KIND_EN, KIND_ZH, UCS2_SEGMENT, Texts
from alertd.core.model import Group, Household, Kind

TEXTS = Texts(ZoneInfo("Asia/Shanghai"))
# 16:05 UTC is 00:05 the next day in Shanghai: the clock must be local, not UTC.
OPENED = datetime(2026, 11, 28, 16, 5, tzinfo=UTC).timestamp()
GROUP = Group("g1", "第三联防组", "边境镇东风村", ("h02",), leader="p05")
HOUSE = Household("h02", "2号户 王家", "g1", address="东风村三社12号")


def incident(kind: Kind = Kind.PANIC, incident_id: int = 1234) -> Incident:
    return Incident(incident_id, "h02", "g1", kind, "default", State.OPEN, OPENED, OPENED)


@pytest.mark.parametrize("kind", list(Kind))
def test_chinese_alert_fits_one_segment_and_says_everything(kind: Kind) -> None:
    text = TEXTS.alert(incident(kind), HOUSE, GROUP).body
    assert len(text) <= UCS2_SEGMENT, text
    assert "2号户 王家" in text
    assert KIND_ZH[kind] in text
    assert "00:05" in text
    assert "16:05" not in text
    assert "回1收到" in text
    assert text.endswith("#1234")
    assert HOUSE.address in text  # the realistic address fits: the longest variant is used


def test_person_language_overrides_the_default() -> None:
    assert "Reply 1" in TEXTS.alert(incident(), HOUSE, GROUP, "en").body
    assert "回1收到" in Texts(ZoneInfo("Asia/Shanghai"), "en").alert(incident(), HOUSE, GROUP, "zh-CN").body


def test_very_long_address_falls_back_to_a_shorter_variant() -> None:
    address = "边境镇东风村三社" + "后山沟口往北第二条小路尽头左手边" * 3
    long_house = Household("h02", "2号户 王家", "g1", address=address)
    text = TEXTS.alert(incident(Kind.GAS), long_house, GROUP).body
    assert len(text) <= UCS2_SEGMENT, text
    assert long_house.address not in text
    assert "2号户 王家" in text
    assert KIND_ZH[Kind.GAS] in text
    assert "00:05" in text
    assert "回1收到" in text
    assert text.endswith("#1234")


def test_long_address_and_long_group_name_fall_back_to_the_shortest_variant() -> None:
    long_group = Group("g1", "第三联防组" * 6, "边境镇东风村" * 3, ("h02",), leader="p05")
    long_house = Household("h02", "2号户 王家", "g1", address="东风村三社" * 10)
    text = TEXTS.alert(incident(Kind.FIRE), long_house, long_group).body
    assert len(text) <= UCS2_SEGMENT, text
    assert long_group.village not in text
    for part in ("2号户 王家", "火警", "00:05", "回1收到", "#1234"):
        assert part in text


def test_missing_address_uses_village_and_group() -> None:
    text = TEXTS.alert(incident(), Household("h02", "2号户 王家", "g1"), GROUP).body
    assert "边境镇东风村第三联防组" in text
    assert len(text) <= UCS2_SEGMENT


@pytest.mark.parametrize("kind", list(Kind))
def test_english_alert_fits_one_gsm_segment(kind: Kind) -> None:
    house = Household("h02", "House 2 Wang", "g1", address="12 East Wind Road, Team 3")
    group = Group("g1", "Group 3", "Dongfeng", ("h02",), leader="p05")
    text = TEXTS.alert(incident(kind), house, group, "en").body
    assert len(text) <= GSM7_SEGMENT, text
    assert KIND_EN[kind] in text
    assert "House 2 Wang" in text
    assert "00:05" in text
    assert "Reply 1" in text
    assert text.endswith("#1234")


def test_english_long_address_falls_back() -> None:
    house = Household("h02", "House 2 Wang", "g1", address="far up the valley road " * 8)
    group = Group("g1", "Group 3", "Dongfeng", ("h02",), leader="p05")
    text = TEXTS.alert(incident(), house, group, "en-GB").body
    assert len(text) <= GSM7_SEGMENT, text
    assert "valley" not in text
    assert "Reply 1" in text
    assert "00:05" in text


def test_whitespace_in_roster_fields_is_collapsed() -> None:
    house = Household("h02", "2号户   王家", "g1", address="")
    text = TEXTS.alert(incident(), house, GROUP).body
    assert "  " not in text


def test_ring_caption() -> None:
    assert TEXTS.ring_caption(HOUSE, Kind.FIRE) == "2号户 王家 火警"
