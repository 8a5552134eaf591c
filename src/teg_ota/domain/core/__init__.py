"""The functional core: pure rules over ``teg_ota.domain.model`` values. No ports, no I/O,
no threads, no clock reads: everything it needs is handed in."""
