"""Camera (a real video file), keyboard key map, stdin, folder and the ``open_scanner`` factory."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from passgate.scanners import (
    CameraScanner,
    Framer,
    ImageFolderScanner,
    KeyMap,
    MissingExtra,
    SerialScanner,
    StdinScanner,
    open_scanner,
)
from passgate.scanners.keyboard import EV_KEY
from tests.sdk.test_decode import frame

WAIT = 3.0


def write_video(path: Path, payloads: list[str | None], frames_each: int) -> None:
    """An MJPG video: each payload (None: an empty scene) held for ``frames_each`` frames."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (640, 480))
    assert writer.isOpened()
    empty = np.full((480, 640), 170, np.uint8)
    for payload in payloads:
        image = cv2.cvtColor(frame(payload) if payload else empty, cv2.COLOR_GRAY2BGR)
        for _ in range(frames_each):
            writer.write(image)
    writer.release()


def test_camera_code_held_for_many_frames_is_one_scan(tmp_path: Path) -> None:
    video = tmp_path / "held.avi"
    write_video(video, ["PG1:HELD", None, "PG1:NEXT", "PG1:HELD"], frames_each=45)
    with CameraScanner(str(video), hold_off=60) as camera:  # however slow the decoding machine
        scans = list(camera)
        health = camera.health()
    # the return of PG1:HELD is within the hold-off: no second scan
    assert [s.text for s in scans] == ["PG1:HELD", "PG1:NEXT"]
    assert {s.source for s in scans} == {f"camera:{video}"}
    assert health.counters["frames"] == 180
    assert health.duplicates == 45 * 3 - 2


def test_camera_without_hold_off_scans_every_frame(tmp_path: Path) -> None:
    video = tmp_path / "short.avi"
    write_video(video, ["PG1:EVERY"], frames_each=5)
    assert [s.text for s in CameraScanner(str(video), hold_off=0)] == ["PG1:EVERY"] * 5


def test_camera_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        CameraScanner(str(tmp_path / "nope.mp4"))


def key_events(text: str, *, enter: bool = True) -> list[tuple[int, int, int]]:
    """What a US-layout keyboard wedge sends for ``text``, as recorded from evdev: key down/up,
    with Left Shift around shifted characters, plus SYN reports (type 0) between keys."""
    from passgate.scanners.keyboard import KEY_ENTER, KEY_LEFTSHIFT, US_KEYS

    reverse = {}
    for code, (plain, shifted) in US_KEYS.items():
        reverse.setdefault(shifted, (code, True))
        reverse[plain] = (code, False)
    events = []
    for char in text:
        code, shift = reverse[char]
        if shift:
            events.append((EV_KEY, KEY_LEFTSHIFT, 1))
        events += [(EV_KEY, code, 1), (0, 0, 0), (EV_KEY, code, 0)]
        if shift:
            events.append((EV_KEY, KEY_LEFTSHIFT, 0))
    if enter:
        events += [(EV_KEY, KEY_ENTER, 1), (EV_KEY, KEY_ENTER, 0)]
    return events


def test_key_map_types_a_pass_with_shift() -> None:
    text = "PG1:6BF*$%/ +.-Zq{a}~|"
    assert KeyMap().feed(key_events(text)) == text.encode() + b"\r"


def test_key_map_through_the_framer_ends_lines_on_enter_or_gap() -> None:
    keys, framer = KeyMap(), Framer("cr", gap=0.1)
    frames = framer.feed(keys.feed(key_events("PG1:ONE")), 1.0)
    frames += framer.feed(keys.feed(key_events("PG1:TWO", enter=False)), 2.0)
    frames += framer.expire(2.2)
    assert [f.data for f in frames] == [b"PG1:ONE", b"PG1:TWO"]


def test_key_map_capslock_repeat_and_unknown_keys() -> None:
    keys = KeyMap()
    caps = [(EV_KEY, 58, 1), (EV_KEY, 58, 0)]
    assert keys.feed([*caps, *key_events("ab1", enter=False), *caps]) == b"AB1"
    assert keys.feed([(EV_KEY, 30, 1), (EV_KEY, 30, 2), (EV_KEY, 30, 0)]) == b"a"  # no autorepeat
    framer = Framer("cr")
    (frame_,) = framer.feed(keys.feed([(EV_KEY, 59, 1), *key_events("X")]), 1.0)  # F1: unmapped
    assert frame_.error


def test_stdin_lines_and_close_from_another_thread() -> None:
    read_end, write_end = os.pipe()
    with os.fdopen(read_end, "rb") as stream:
        source = StdinScanner(stream)
        scans, done = [], threading.Event()

        def run() -> None:
            scans.extend(source)
            done.set()

        threading.Thread(target=run, daemon=True).start()
        os.write(write_end, b"PG1:A\nPG1:B\r\n\xff\xfe\n")
        assert not done.wait(0.3)  # the pipe is still open: the source waits for more
        source.close()
        assert done.wait(WAIT)
        os.close(write_end)
    assert [s.text for s in scans] == ["PG1:A", "PG1:B"]
    assert source.health().dropped == 1


def test_stdin_end_of_input_ends_iteration() -> None:
    proc = subprocess.run(
        [sys.executable, "-c",
         "from passgate.scanners import open_scanner\n"
         "for s in open_scanner('stdin:'): print(s.source, s.text)"],
        input=b"PG1:X\nPG1:Y", capture_output=True, timeout=30, check=True,
    )
    assert proc.stdout.decode().splitlines() == ["stdin: PG1:X", "stdin: PG1:Y"]


def test_folder_scans_images_in_name_order(tmp_path: Path) -> None:
    for name, payload in [("b.png", "PG1:B"), ("a.png", "PG1:A")]:
        Image.fromarray(frame(payload)).save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with ImageFolderScanner(tmp_path) as folder:
        assert [s.text for s in folder] == ["PG1:A", "PG1:B"]
        assert folder.health().dropped == 1


def test_folder_watch_picks_up_new_files_until_closed(tmp_path: Path) -> None:
    folder = ImageFolderScanner(tmp_path, watch=True, poll=0.02)
    seen: list[str | None] = []
    got = threading.Event()

    def run() -> None:
        for scan in folder:
            seen.append(scan.text)
            got.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    Image.fromarray(frame("PG1:NEW")).save(tmp_path / "tmp.png")
    assert got.wait(WAIT)
    folder.close()
    thread.join(WAIT)
    assert not thread.is_alive()
    assert seen == ["PG1:NEW"]


def test_open_scanner_specs(tmp_path: Path) -> None:
    video = tmp_path / "v.avi"
    write_video(video, ["PG1:V"], frames_each=1)
    serial = open_scanner("serial:loop://", baud=9600, framing="crlf", gap_ms=30)
    assert isinstance(serial, SerialScanner)
    assert (serial.port, serial.baud, serial.framer.framing) == ("loop://", 9600, "crlf")
    assert isinstance(open_scanner(f"camera:{video}"), CameraScanner)
    assert open_scanner("camera:0").device == 0
    assert isinstance(open_scanner("stdin:"), StdinScanner)
    assert isinstance(open_scanner(f"folder:{tmp_path}"), ImageFolderScanner)
    for bad in ("usb:/dev/x", "serial:", "camera", ""):
        with pytest.raises(ValueError, match="bad scanner spec"):
            open_scanner(bad)


def test_base_install_imports_no_optional_dependency() -> None:
    code = (
        "import sys, passgate, passgate.scanners, passgate.decode\n"
        "heavy = {'serial', 'cv2', 'evdev', 'zxingcpp', 'pyzbar', 'numpy', 'PIL'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30, check=True)
    assert out.stdout.decode().strip() == "[]"


@pytest.mark.parametrize(
    ("module", "spec", "extra"),
    [("evdev", "keyboard:/dev/input/event0", "keyboard"), ("serial", "serial:loop://", "serial"),
     ("cv2", "camera:0", "camera")],
)
def test_missing_extra_names_the_pip_extra(monkeypatch, module: str, spec: str, extra: str) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # what an install without the extra sees
    with pytest.raises(MissingExtra, match=re.escape(f"pip install 'passgate[{extra}]'")):
        open_scanner(spec)
