"""Host-side fleet tool: flash (esptool), install (mpremote), register and verify boards."""
