"""The public library API for products that embed teg-ota (docs/embedding.md).

from teg_ota.api import build_gateway, load_settings
gateway = build_gateway(load_settings(), telemetry=my_sink)
gateway.handle_attributes(payload)   # -> bool, like the seed's on_msg_check_for_ota_update
gateway.watchdog_tick()              # -> bool, like restart_controller_if_needed
gateway.status()
"""

from teg_ota.app.container import Container, build_container, build_gateway
from teg_ota.app.gateway import Gateway
from teg_ota.app.settings import ConfigError, Settings, load_settings
from teg_ota.app.status_view import GatewayStatus
from teg_ota.domain.model.outcome import Outcome, UpdateResult
from teg_ota.ports import OtaReport, TelemetrySink

__all__ = [
    "ConfigError",
    "Container",
    "Gateway",
    "GatewayStatus",
    "OtaReport",
    "Outcome",
    "Settings",
    "TelemetrySink",
    "UpdateResult",
    "build_container",
    "build_gateway",
    "load_settings",
]
