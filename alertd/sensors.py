"""Zigbee2MQTT states read as transitions: the codec's memory of each watched sensor's last state.

Zigbee2MQTT publishes a device's whole state on every change, so "smoke: true" twice is one alarm, not
two. The engine hands each SensorState here; what comes back is the inputs it means (an Alarm on a
rising edge, a Restore on a falling one, device news) and the state to persist with the device.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from alertd.core.events import Input, SensorState
from alertd.core.model import Roster
from alertd.core.profile import DeviceProfile, Transport
from alertd.core.records import DeviceUpdate
from alertd.core.results import Result, Verdict
from alertd.observe import Observer
from alertd.protocols import zigbee2mqtt
from alertd.store import DeviceRecord


@dataclass(slots=True)
class Decoded:
    inputs: list[Input] = field(default_factory=list)
    update: DeviceUpdate | None = None  # the new state to store with the device (None: unchanged)
    refused: Result | None = None  # not watched, or a payload the codec refused


class SensorStates:
    def __init__(self, observer: Observer) -> None:
        self.observer = observer
        self._states: dict[str, zigbee2mqtt.DeviceState] = {}

    def load(self, records: Iterable[DeviceRecord]) -> None:
        self._states = {r.id: zigbee2mqtt.DeviceState.from_json(r.state) for r in records if r.state is not None}

    def decode(
        self, message: SensorState, roster: Roster, profiles: Mapping[str, DeviceProfile], now: float
    ) -> Decoded:
        device = roster.devices.get(message.device_id)
        profile = profiles.get(device.profile) if device is not None else None
        if device is None or profile is None or profile.transport != Transport.ZIGBEE2MQTT:
            # Zigbee2MQTT also publishes devices alertd does not watch (lights, plugs): not an error.
            return Decoded(refused=Result(Verdict.NOT_WATCHED))
        previous = self._states.get(device.id)
        try:
            state, events = zigbee2mqtt.interpret(
                device.id, profile, previous, message.payload, retained=message.retained
            )
        except zigbee2mqtt.Z2mError as err:
            self.observer.invalid(f"zigbee2mqtt_{err.reason}", "Zigbee2MQTT state of %s rejected: %s", device.id, err)
            return Decoded(refused=Result(Verdict.INVALID, detail=err.reason))
        if state == previous:
            return Decoded(list(events))
        self._states[device.id] = state
        return Decoded(list(events), DeviceUpdate(device.id, now, state=state.to_json()))
