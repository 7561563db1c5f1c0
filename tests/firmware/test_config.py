"""Config: the shipped example validates, embedded defaults work, every error names its key."""

from pathlib import Path

import pytest

from passgated.config import ConfigError, load_config, parse_config
from passgated.policy import Direction, StaleListPolicy

ROOT = Path(__file__).parents[2]


def test_shipped_example_is_valid() -> None:
    config = load_config(ROOT / "packaging/gate.toml")
    assert config.gate_id == "north-1" and config.policy.zones == ("A", "B")
    assert config.directions == (Direction.ENTRY, Direction.EXIT)
    assert [s.direction for s in config.scanners] == [Direction.ENTRY, Direction.EXIT]
    assert config.scanners[0].options == {"baud": 115200}
    assert config.pins["reset"].pin == 22 and config.timing.relay_pulse_s == 0.3
    assert config.policy.stale_list is StaleListPolicy.GUARD


def test_embedded_defaults() -> None:
    config = load_config()
    assert config.pin_factory == "mock" and config.timing.passage_timeout_s == 5.0
    assert config.scanners[0].source == "stdin:" and config.display_listen == "127.0.0.1:8080"


def test_relative_paths_resolve_against_the_file(tmp_path: Path) -> None:
    (tmp_path / "gate.toml").write_text('[journal]\npath = "j.db"\n[trust]\ndir = "keys"\n')
    config = load_config(tmp_path / "gate.toml")
    assert config.journal_path == tmp_path / "j.db" and config.trust_dir == tmp_path / "keys"


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"gate": {"zones": "A"}}, "gate.zones"),
        ({"gate": {"zones": [""]}}, "gate.zones"),
        ({"gate": {"directions": ["in"]}}, "gate.directions"),
        ({"gate": {"exit_mode": "open"}}, "gate.exit_mode"),
        ({"gate": {"colour": "red"}}, "gate.colour"),
        ({"gates": {}}, "gates"),
        ({"pins": {"red": 5}}, "pins.red"),
        ({"pins": {"fire_loop": False}}, "pins.fire_loop"),
        ({"pins": {"green": 99}}, "pins.green.pin"),
        ({"pins": {"green": {"pin": 4, "sense": 1}}}, "pins.green"),
        ({"pins": {"factory": "pigpio"}}, "pins.factory"),
        ({"timing": {"relay_pulse_ms": 0}}, "timing.relay_pulse_ms"),
        ({"timing": {"relay_pulse_ms": True}}, "timing.relay_pulse_ms"),
        ({"scanner": [{"direction": "entry"}]}, "scanner[0].source"),
        ({"scanner": [{"source": "stdin:", "direction": "exit"}]}, "scanner[0].direction"),
        ({"scanner": [{"source": "stdin:", "on_offline": "ignore"}]}, "scanner[0].on_offline"),
        ({"scanner": [{"source": "stdin:", "on_tamper": True}]}, "scanner[0].on_tamper"),
        ({"scanner": [{"source": "osdp:/dev/ttyUSB0?addr=1:exit"}]}, "scanner[0].source"),  # entry-only
        ({"scanner": [{"source": "osdp:/dev/ttyUSB0?addr=1", "baud": 9600}]}, "scanner[0].baud"),
        ({"denylist": {"stale_policy": "maybe"}}, "denylist.stale_policy"),
        ({"hub": {"url": "https://hub"}}, "hub.token"),
        ({"display": {"listen": "8080"}}, "display.listen"),
        ({"journal": {"retention_days": -1}}, "journal.retention_days"),
        ({"policy": {"skew_seconds": -5}}, "policy.skew_seconds"),
        ({"policy": {"anti_passback_minutes": -1}}, "policy.anti_passback_minutes"),
    ],
)
def test_errors_name_the_key(data: dict, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert str(info.value).startswith(key)


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "missing.toml")
    (tmp_path / "bad.toml").write_text("[gate\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(tmp_path / "bad.toml")


def test_reader_rules_and_directions_of_a_bus() -> None:
    config = parse_config({"gate": {"directions": "both"}, "scanner": [
        {"source": "osdp:/dev/ttyUSB0?addr=1:entry,2:exit", "keys": "/k", "on_offline": "event"}]})
    spec = config.scanners[0]
    assert (spec.on_offline, spec.on_tamper) == ("event", "fault")  # tamper faults unless told
    assert spec.options == {"keys": "/k"}  # the gate's own keys are not the source's options
