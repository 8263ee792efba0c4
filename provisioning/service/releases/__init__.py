"""What parkfleet ships to a board: the device agent, built for the board's MicroPython."""
