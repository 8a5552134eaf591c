"""The pure core: version rules, OTA messages and states, update decisions, backoff, services.

Nothing here imports anything but the standard library, ``teg_ota.domain`` and
``teg_ota.ports``; every effect goes through a port.
"""
