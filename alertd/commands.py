"""Which ring and stop commands a device gets, as (topic, payload): our terminal protocol for terminals,
the device profile's templates for everything else (Zigbee2MQTT sirens...)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from alertd.core.model import Device, Household, Kind
from alertd.core.profile import Command, DeviceProfile, Transport
from alertd.protocols import terminal, zigbee2mqtt


@dataclass(frozen=True, slots=True)
class CommandBook:
    topics: terminal.Topics = field(default_factory=terminal.Topics)  # our terminal protocol's topics
    zigbee_base: str = zigbee2mqtt.DEFAULT_BASE
    profiles: Mapping[str, DeviceProfile] = field(default_factory=dict)
    devices: Mapping[str, Device] = field(default_factory=dict)  # the roster's, to stop what was rung

    def is_terminal(self, device: Device) -> bool:
        profile = self.profiles.get(device.profile)
        return profile is None or profile.transport == Transport.ALERTD

    def ring(self, device: Device, incident_id: int, kind: Kind, caller: Household) -> tuple[str, str] | None:
        """The command that makes `device` sound for an incident at `caller`; None if it cannot sound."""
        if not device.ringable:
            return None
        if self.is_terminal(device):
            topic = self._cmd_topic(device.id)
            return None if topic is None else (topic, terminal.encode_ring(incident_id, kind, caller.id, caller.label))
        profile = self.profiles[device.profile]
        return None if profile.ring is None else self._render(profile.ring, device, incident_id, kind)

    def stop(self, device_id: str, incident_id: int, kind: Kind) -> tuple[str, str] | None:
        device = self.devices.get(device_id)
        if device is None or self.is_terminal(device):
            topic = self._cmd_topic(device_id)
            return None if topic is None else (topic, terminal.encode_stop(incident_id))
        profile = self.profiles.get(device.profile)
        return (
            None if profile is None or profile.stop is None else self._render(profile.stop, device, incident_id, kind)
        )

    def _cmd_topic(self, device_id: str) -> str | None:
        try:
            return self.topics.cmd(device_id)
        except ValueError:
            return None  # a device id with '/', '+' or '#' cannot be a topic level: it cannot be rung

    def _render(self, command: Command, device: Device, incident_id: int, kind: Kind) -> tuple[str, str] | None:
        try:
            return zigbee2mqtt.render(command, base=self.zigbee_base, name=device.id, incident=incident_id, kind=kind)
        except zigbee2mqtt.Z2mError:
            return None  # profiles are validated at load; a device name unfit for a topic cannot be rung
