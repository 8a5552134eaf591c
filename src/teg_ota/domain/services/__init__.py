"""The imperative shell: performs what the core decides, through the ports only. No locks,
no threads, no queues: one operation at a time is the app layer's ``Exclusive``."""
