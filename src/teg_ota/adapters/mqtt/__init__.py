"""The ThingsBoard device link over MQTT, one module per job.

``settings`` (how to connect, with which credentials), ``payloads`` (ThingsBoard's topics,
JSON and size limit, pure), ``timestamps`` (flat or stamped, and a ``ts`` that never goes
back, yet stays near the clock), ``outbox`` (the FIFO: durable, or in memory while the disk
cannot hold it) with ``outbox_format``, ``outbox_files``, ``outbox_bound`` and
``outbox_health`` (its files, its bound, its persistence health), ``client`` and ``session``
(one gmqtt client per connection, and the attempts that open it), ``telemetry_queue`` and
``sender`` (the outbox's two ends), ``provision`` (a new device's credentials from
ThingsBoard; with ``provision_messages``, ``provision_session`` and ``credentials_file``),
``reconnect`` (when to connect: the fleet-spreading schedule of domain/core/jitter.py),
``loop_host`` (the link's own thread, or a shared loop) and ``link`` (:class:`GmqttLink`,
which composes them). The names below are what the composition root and the tests use; the
rest stays inside the package.
"""

from teg_ota.adapters.mqtt.link import GmqttLink
from teg_ota.adapters.mqtt.outbox import DurableOutbox, OutboxEntry, decode_entry, encode_entry
from teg_ota.adapters.mqtt.payloads import OTA_SHARED_KEYS, TELEMETRY_TOPIC
from teg_ota.adapters.mqtt.provision import CredentialsFile, Provisioner, ProvisionRequest
from teg_ota.adapters.mqtt.settings import MqttSettings

__all__ = [
    "CredentialsFile",
    "DurableOutbox",
    "GmqttLink",
    "MqttSettings",
    "OTA_SHARED_KEYS",
    "OutboxEntry",
    "ProvisionRequest",
    "Provisioner",
    "TELEMETRY_TOPIC",
    "decode_entry",
    "encode_entry",
]
