"""The dashboard's rules that need no browser: board status and the SVG path data."""

from __future__ import annotations

from provisioning.common import display
from provisioning.service.ui import chart, views

NOW = 1_800_000_000.0


def test_online_follows_the_board_interval() -> None:
    # Offline after 2 posting periods + 15 s; a period is interval_s x readings per post.
    assert views.board_status(True, NOW - 130, {}, NOW) == (True, [])
    assert views.board_status(True, NOW - 136, {}, NOW)[0] is False  # 60 s default
    assert views.board_status(True, NOW - 24, {"interval_s": 5}, NOW)[0] is True
    assert views.board_status(True, NOW - 26, {"interval_s": 5}, NOW)[0] is False
    assert views.board_status(True, NOW - 500, {"interval_s": 300}, NOW)[0] is True
    assert views.board_status(True, NOW - 616, {"interval_s": 300}, NOW)[0] is False
    # A board that batches 12 readings of 5 s into one post posts once a minute.
    assert views.board_status(True, NOW - 130, {"interval_s": 5}, NOW, 12)[0] is True
    assert views.board_status(True, NOW - 136, {"interval_s": 5}, NOW, 12)[0] is False
    assert views.board_status(True, None, {}, NOW)[0] is False
    assert views.board_status(False, NOW, {}, NOW) == (False, ["disabled"])


def test_unwell_boards_say_why() -> None:
    health = {"spool_depth": 12, "dropped": 3, "rssi": -88, "free_heap": 9000,
              "reset_cause": "watchdog"}  # fmt: skip
    _online, problems = views.board_status(True, NOW, health, NOW)
    assert problems == [
        "12 readings waiting in spool", "dropped 3 readings", "weak WiFi (-88 dBm)",
        "low free heap (8 KB)", "reset by watchdog",
    ]  # fmt: skip
    quiet = {"spool_depth": 0, "dropped": 0, "rssi": -60, "free_heap": 90000,
             "reset_cause": "power_on"}  # fmt: skip
    assert views.board_status(True, NOW, quiet, NOW) == (True, [])
    # A reading taken while a post was in flight is not a backlog; three are.
    assert views.board_status(True, NOW, {"spool_depth": 2}, NOW) == (True, [])
    assert views.board_status(True, NOW, {"spool_depth": 3}, NOW)[1] == [
        "3 readings waiting in spool"
    ]


def test_health_is_written_in_units() -> None:
    rows = display.health_rows(
        {"uptime_s": 93784, "free_heap": 1991264, "rssi": -61, "interval_s": 5, "x": 1}
    )
    assert rows == [
        ("Reads every", "5 s"), ("Uptime", "1 d 2 h"), ("WiFi signal", "-61 dBm"),
        ("Free heap", "1944 KB"), ("x", "1"),
    ]  # fmt: skip
    assert display.duration(0) == "0 s" and display.duration(5400) == "1 h 30 min"


def test_missing_points_break_the_line() -> None:
    path = chart.sparkline([None, 2, 4, None, 4], top=8, width=40, height=10)
    assert path.count("M") == 2 and path.count("L") == 1
    assert chart.sparkline([], top=None) == ""
    assert chart.sparkline([None, None, 7], top=None) == ""  # one point: "no history yet"
    drawn = chart.chart([0, 60, 120], [None, None, None], 10, 120)
    assert drawn.empty and drawn.line == "" and drawn.area == ""
    full = chart.chart([0, 60, 120], [1, 5, 3], 10, 120)
    assert full.peak == 5 and full.capacity_y is not None and full.x_labels[-1][2] == "end"
