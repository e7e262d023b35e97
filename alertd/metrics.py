"""Prometheus metrics, on a registry of their own (no global state)."""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from alertd.core.incidents import Incident, Notification, State
from alertd.core.model import Kind


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.alarms = Counter("alertd_alarms_received", "Alarms received", ["source", "kind"], registry=r)
        self.invalid = Counter("alertd_invalid_messages", "Inputs rejected, by reason", ["reason"], registry=r)
        self.clock_offset = Gauge(
            "alertd_wall_clock_offset_seconds",
            "The wall clock minus alertd's steady clock (non-zero after a clock step; timers are not affected)",
            registry=r,
        )
        self.store_writable = Gauge(
            "alertd_store_writable",
            "1 while commits go through, 0 while they fail (disk full)",
            registry=r,
        )
        self.store_writable.set(1)
        self.active = Gauge(
            "alertd_active",
            "1 while this instance is the active one (it holds the lease, or runs alone on SQLite), 0 as a standby",
            registry=r,
        )
        self.duplicates = Counter("alertd_duplicate_alarms", "Alarms recognised as redeliveries", registry=r)
        self.replays = Counter(
            "alertd_inbound_replays",
            "Inbound messages (SMS replies) handled already and ignored",
            ["carrier"],
            registry=r,
        )
        self.opened = Counter("alertd_incidents_opened", "Incidents opened", ["kind"], registry=r)
        self.incidents = Gauge("alertd_incidents_active", "Active incidents", ["kind", "state"], registry=r)
        self.lookup_failures = Counter(
            "alertd_outbox_lookup_failures",
            "Carrier lookups (did an earlier attempt go out?) that failed; the message was sent again",
            ["channel", "carrier"],
            registry=r,
        )
        self.sms_hedged = Counter(
            "alertd_sms_hedged",
            "Alarm SMS also sent through another carrier because this one had not answered within "
            "[sms] hedge_after_s, or was down and being probed",
            ["carrier"],
            registry=r,
        )
        self.sms_hedge_leftovers = Counter(
            "alertd_sms_hedge_leftovers",
            "SMS attempts left running after another carrier accepted the message, by how they ended "
            "(accepted: the recipient may have it twice)",
            ["carrier", "outcome"],
            registry=r,
        )
        self.notifications = Counter(
            "alertd_notifications", "Notifications by channel, carrier and status", ["channel", "carrier", "status"],
            registry=r,
        )  # fmt: skip
        self.time_to_ack = Histogram(
            "alertd_time_to_acknowledge_seconds",
            "From incident opened to first acknowledgement",
            buckets=(10, 30, 60, 120, 180, 300, 600, 1200, 3600),
            registry=r,
        )
        self.calls = Counter(
            "alertd_call_outcomes", "What became of alert calls (answered, key, no-answer, busy, machine...)",
            ["outcome"], registry=r,
        )  # fmt: skip
        self.missed_calls = Counter(
            "alertd_missed_calls", "Missed calls to the village modem, by what they did", ["result"], registry=r
        )
        self.supervision = Counter(
            "alertd_supervision_events", "Device health reports", ["event", "restore"], registry=r
        )
        self.modem_up = Gauge("alertd_modem_up", "1 while the GSM modem answers and is initialised", registry=r)
        self.modem_registered = Gauge("alertd_modem_registered", "1 while the modem is on the network", registry=r)
        self.modem_signal = Gauge("alertd_modem_signal_rssi", "Modem signal, AT+CSQ 0-31 (-1 unknown)", registry=r)
        self.contact_id = Counter(
            "alertd_contact_id_reports",
            "Contact ID reports by receiver and outcome",
            ["receiver", "outcome"],
            registry=r,
        )
        self.mqtt_connected = Gauge("alertd_mqtt_connected", "1 while the broker link is up", registry=r)
        for kind in Kind:
            for state in (State.OPEN, State.ACKNOWLEDGED, State.ON_SCENE):
                self.incidents.labels(kind=kind.value, state=state.value).set(0)

    def planned(self, notifications: Iterable[Notification]) -> None:
        for (channel,), count in Tally((n.channel.value,) for n in notifications).items():
            self.notifications.labels(channel=channel, carrier="", status="planned").inc(count)

    def set_active(self, incidents: Iterable[Incident]) -> None:
        tally = Tally((i.kind.value, i.state.value) for i in incidents if i.maintenance is None)
        for kind in Kind:
            for state in (State.OPEN, State.ACKNOWLEDGED, State.ON_SCENE):
                self.incidents.labels(kind=kind.value, state=state.value).set(tally.get((kind.value, state.value), 0))

    def render(self) -> bytes:
        return generate_latest(self.registry)
