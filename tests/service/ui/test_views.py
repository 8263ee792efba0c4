"""The dashboard's rules that need no browser: board status and the SVG path data."""

from __future__ import annotations

from provisioning.service.ui import chart, views

NOW = 1_800_000_000.0


def test_online_follows_the_board_interval() -> None:
    assert views.board_status(True, NOW - 80, {}, NOW) == (True, [])
    assert views.board_status(True, NOW - 200, {}, NOW)[0] is False  # 3 x 60 s default
    assert views.board_status(True, NOW - 500, {"interval_s": 300}, NOW)[0] is True
    assert views.board_status(True, NOW - 901, {"interval_s": 300}, NOW)[0] is False
    assert views.board_status(True, None, {}, NOW)[0] is False
    assert views.board_status(False, NOW, {}, NOW) == (False, ["disabled"])


def test_unwell_boards_say_why() -> None:
    health = {"spool_depth": 12, "dropped": 3, "rssi": -88, "free_heap": 9000,
              "reset_cause": "watchdog"}  # fmt: skip
    _online, problems = views.board_status(True, NOW, health, NOW)
    assert problems == [
        "12 readings waiting in spool", "dropped 3 readings", "weak WiFi (-88 dBm)",
        "low free heap (9000 B)", "reset by watchdog",
    ]  # fmt: skip
    quiet = {"spool_depth": 0, "dropped": 0, "rssi": -60, "free_heap": 90000,
             "reset_cause": "power_on"}  # fmt: skip
    assert views.board_status(True, NOW, quiet, NOW) == (True, [])


def test_missing_points_break_the_line() -> None:
    path = chart.sparkline([None, 2, 4, None, 4], top=8, width=40, height=10)
    assert path.count("M") == 2 and path.count("L") == 1
    assert chart.sparkline([], top=None) == ""
    drawn = chart.chart([0, 60, 120], [None, None, None], 10, 120)
    assert drawn.empty and drawn.line == "" and drawn.area == ""
    full = chart.chart([0, 60, 120], [1, 5, 3], 10, 120)
    assert full.peak == 5 and full.capacity_y is not None and full.x_labels[-1][2] == "end"
