"""Launchers the demo, the benchmarks and the tests share: the service (`parkctl serve`) on a free
port, PostgreSQL databases, Mosquitto from broker-config/, agents under the MicroPython Unix port,
the fault proxy and a throwaway PKI.

Nothing here asserts anything: a missing system service raises `ServiceMissing`, which the tests
turn into a skip (or a failure under CI) and a tool into one clear message.
"""
