"""A labgrid board farm on loopback: `tinygen farm up/down` and
`tinygen verify --place/--place-tag`.

Fast: tag syntax, the exporter file as labgrid itself reads it, the
one-line errors (no coordinator, --port with --place, a real board for farm
up, farm down with no farm).  Slow: the whole loop as CI runs it: one farm
of two emulated boards (coordinator, exporter, places) shared by the module;
verify on both (reports name each place), a place another job holds (refused
naming the holder, waited for, timed out), a model the boards do not run
(refused by the handshake), labgrid's pytest plugin giving tinygen's `dut` a
RemotePlace (and the job's own verify using the place it holds), then the faults, last because they break the farm: a board
killed mid-run, the exporter gone, the coordinator gone; farm down leaves
no process behind and nothing acquired.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import ROOT

QUICKSTART = ROOT / "examples" / "quickstart"
BOARD = "qemu-cortex-m4"


def _env(**extra) -> dict:
    env = dict(os.environ, no_proxy="127.0.0.1,localhost", PYTHONPATH=str(ROOT))
    env.pop("LG_COORDINATOR", None)
    env.update(extra)
    return env


def _cli(*args, env=None, timeout=600):
    return subprocess.run([sys.executable, "-m", "tinygen.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=env or _env())


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("tinygen: error:")]


# ---------------------------------------------------------------------------
# fast


def test_place_tags_follow_labgrids_syntax():
    from tinygen.farm.places import FarmError, parse_tags, tag_value
    assert parse_tags(["board=qemu-stm32f405", "rack=r1"]) == {"board": "qemu-stm32f405",
                                                               "rack": "r1"}
    for bad in ("board", "Board=x", "board=Nucleo.F4", "=x"):
        with pytest.raises(FarmError, match="KEY=VALUE"):
            parse_tags([bad])
    assert tag_value("ESP32.cam") == "esp32_cam"


def test_exporter_config_is_what_labgrid_reads(tmp_path):
    # labgrid renders the file with Jinja before YAML: a single '#' comment
    # would break it, so the writer uses '##'
    from labgrid.remote.config import ResourceConfig

    from tinygen.farm.daemon import exporter_yaml
    path = tmp_path / "exporter.yaml"
    path.write_text(exporter_yaml({"b-1": (4001, 115200), "b-2": (4002, 9600)}))
    data = ResourceConfig(str(path)).data
    assert list(data) == ["b-1", "b-2"]
    assert dict(data["b-2"]["NetworkSerialPort"]) == {
        "host": "127.0.0.1", "port": 4002, "speed": 9600, "protocol": "raw"}


def test_no_coordinator_is_one_line():
    from tinygen.device.qemu import free_loopback_port
    port = free_loopback_port()      # nothing listens there
    t0 = time.monotonic()
    r = _cli("verify", "--place", "b-1", QUICKSTART / "model.h5",
             env=_env(LG_COORDINATOR=f"127.0.0.1:{port}"), timeout=120)
    assert r.returncode == 2, r.stderr
    assert _error_lines(r.stderr) == [
        f"tinygen: error: labgrid coordinator at 127.0.0.1:{port} does not answer: is it "
        "running? (`tinygen farm up` starts one; LG_COORDINATOR names it)"]
    assert "Traceback" not in r.stderr
    assert time.monotonic() - t0 < 60
    r = _cli("verify", "--place", "b-1", QUICKSTART / "model.h5", env=_env())
    assert r.returncode == 2 and "no labgrid coordinator: set LG_COORDINATOR" in r.stderr


def test_bad_farm_requests_are_one_line(tmp_path):
    r = _cli("verify", "--place", "b-1", "--port", "socket://127.0.0.1:1", QUICKSTART / "model.h5")
    assert r.returncode == 2
    assert _error_lines(r.stderr) == ["tinygen: error: give boards with --port or with "
                                      "--place/--place-tag, not both"]
    r = _cli("verify", "--place-tag", "Board=x", QUICKSTART / "model.h5",
             env=_env(LG_COORDINATOR="127.0.0.1:1"))
    assert r.returncode == 2 and "is not KEY=VALUE" in r.stderr
    r = _cli("farm", "up", "--board", "nucleo_f446re", "--count", "2", QUICKSTART / "model.h5",
             "--dir", tmp_path / "farm")
    assert r.returncode == 2 and "nucleo_f446re is a real board" in r.stderr
    assert not (tmp_path / "farm").exists()
    r = _cli("farm", "down", "--dir", tmp_path / "farm")
    assert r.returncode == 2 and _error_lines(r.stderr)[0].startswith("tinygen: error: no farm in")


# ---------------------------------------------------------------------------
# slow: one farm of two emulated boards for the module


def _pids_alive(pids) -> list[int]:
    alive = []
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        if "\nState:\tZ" not in status:
            alive.append(pid)
    return alive


@pytest.fixture(scope="module")
def farm(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("farm")
    farm_dir = tmp / "farm"
    r = _cli("farm", "up", "--board", BOARD, "--count", "2", QUICKSTART / "model.h5",
             "--calib", QUICKSTART / "calib.npy", "-o", tmp / "project", "--dir", farm_dir)
    assert r.returncode == 0, r.stderr
    line = r.stdout.strip().splitlines()[-1]
    assert line.startswith("export LG_COORDINATOR=127.0.0.1:"), r.stdout
    state = json.loads((farm_dir / "state.json").read_text())
    assert [p["name"] for p in state["places"]] == [f"{BOARD}-1", f"{BOARD}-2"]
    state["dir"] = farm_dir
    state["env"] = _env(LG_COORDINATOR=line.split("=", 1)[1], LG_USERNAME="ci-job")
    state["tmp"] = tmp
    try:
        yield state
    finally:
        pids = [state["pid"], state.get("exporter_pid"), state.get("coordinator_pid")] + \
            [p["qemu_pid"] for p in state["places"]]
        down = _cli("farm", "down", "--dir", farm_dir)
        deadline = time.monotonic() + 20
        while _pids_alive([p for p in pids if p]) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert down.returncode == 0, down.stderr
        assert not _pids_alive([p for p in pids if p]), "farm down left processes behind"


def _verify(farm, *args, samples=3, env=None, timeout=600):
    return _cli("verify", *args, QUICKSTART / "model.h5", "--calib", QUICKSTART / "calib.npy",
                "--samples", samples, env=env or farm["env"], timeout=timeout)


def _acquired(farm) -> dict:
    """Place name -> holder, read through labgrid's own client."""
    from tinygen.farm import Farm
    with Farm(farm["env"]["LG_COORDINATOR"]) as f:
        return {name: place.acquired for name, place in f.places().items()}


@pytest.mark.slow
def test_verify_on_every_tagged_place(farm, tmp_path):
    status = _cli("farm", "status", "--dir", farm["dir"])
    assert status.returncode == 0, status.stderr
    assert status.stdout.splitlines()[0].startswith(f"coordinator {farm['coordinator']}, {BOARD}")
    assert all(f"{p['name']}: {p['url']}" in status.stdout for p in farm["places"])
    out = tmp_path / "r.json"
    r = _verify(farm, "--place-tag", f"board={BOARD}", "--json", out, "--junit",
                tmp_path / "r.xml", "--html", tmp_path / "r.html")
    assert r.returncode == 0, r.stderr
    assert "PASS: 2 of 2 boards verified, all bit-exact" in r.stdout
    payload = json.loads(out.read_text())
    assert payload["passed"] and payload["bit_exact"]
    urls = {p["name"]: p["url"] for p in farm["places"]}
    assert [(b["place"], b["port"], b["board"]) for b in payload["boards"]] == [
        (name, urls[name], BOARD) for name in sorted(urls)]
    suites = ET.parse(tmp_path / "r.xml").getroot().findall("testsuite")
    assert sorted(s.get("hostname") for s in suites) == sorted(urls)
    assert f"{BOARD}-2" in (tmp_path / "r.html").read_text()
    assert set(_acquired(farm).values()) == {None}


@pytest.mark.slow
def test_one_named_place_and_a_model_the_boards_do_not_run(farm, cnn_h5, cnn_calib, tmp_path):
    r = _verify(farm, "--place", f"{BOARD}-2", "--json", tmp_path / "one.json")
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "one.json").read_text())["place"] == f"{BOARD}-2"
    # another model: the handshake's signature refuses the board, no verdict
    r = _cli("verify", "--place", f"{BOARD}-1", cnn_h5, "--calib", cnn_calib, "--samples", 2,
             env=farm["env"])
    assert r.returncode == 2
    assert _error_lines(r.stderr)[0].startswith(
        f"tinygen: error: place {BOARD}-1: the device runs a different model (signature ")
    assert "PASS" not in r.stdout
    assert set(_acquired(farm).values()) == {None}


@pytest.mark.slow
def test_a_place_held_by_another_job(farm, monkeypatch):
    from tinygen.farm import Farm
    place = f"{BOARD}-2"
    monkeypatch.setenv("LG_USERNAME", "alice")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    with Farm(farm["env"]["LG_COORDINATOR"]) as alice:
        with alice.acquired([place]):
            holder = alice.user
            r = _verify(farm, "--place-tag", f"board={BOARD}", samples=1)
            assert r.returncode == 2
            assert _error_lines(r.stderr) == [
                f"tinygen: error: place {place} is acquired by {holder}; give --place-wait "
                "SECONDS to queue for it"]
            r = _verify(farm, "--place", place, "--place-wait", "2", samples=1)
            assert r.returncode == 2
            assert _error_lines(r.stderr) == [
                f"tinygen: error: place {place} is acquired by {holder}: still busy after "
                "waiting 2 s"]
            assert alice.places()[f"{BOARD}-1"].acquired is None   # what it took, it gave back
            # a job that waits gets the place when alice lets go
            waiting = subprocess.Popen(
                [sys.executable, "-m", "tinygen.cli", "verify", "--place-tag", f"board={BOARD}",
                 "--place-wait", "300", QUICKSTART / "model.h5", "--calib",
                 QUICKSTART / "calib.npy", "--samples", "1"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=farm["env"])
            # alice lets go only once the job says it waits: releasing as soon as its
            # reservation exists raced with the job's first poll on a loaded machine
            seen = ""
            while "waiting: " not in seen:
                line = waiting.stderr.readline()
                assert line, f"the job ended without waiting: {seen}"
                seen += line
            assert f"waiting: place {place} is acquired by {holder}" in seen
            assert _reservations(alice) > 0 and waiting.poll() is None
        out, err = waiting.communicate(timeout=600)
    assert waiting.returncode == 0, seen + err
    assert "PASS: 2 of 2 boards verified" in out
    assert set(_acquired(farm).values()) == {None}


def _reservations(farm) -> int:
    from labgrid.remote.generated import labgrid_coordinator_pb2 as pb2
    session = farm._live()
    response = farm._run(session.stub.GetReservations(pb2.GetReservationsRequest()))
    return len(response.reservations)


@pytest.mark.slow
def test_labgrid_pytest_plugin_gives_dut_a_remote_place(farm, tmp_path, monkeypatch):
    from tinygen.farm import Farm
    place = f"{BOARD}-1"
    (tmp_path / "env.yaml").write_text(
        "targets:\n  main:\n    resources:\n      RemotePlace:\n"
        f"        name: {place}\n")
    (tmp_path / "test_on_place.py").write_text(
        "import numpy as np\n\n"
        "def test_device_matches_reference(dut, target):\n"
        "    assert target.name == 'main'\n"
        "    x = np.linspace(-1, 1, int(np.prod(dut.model.input_tensors()[0].shape)))\n"
        "    got = dut.infer(x).outputs\n"
        "    want = dut.reference(x)\n"
        "    assert all(np.array_equal(a, b) for a, b in zip(got, want))\n")
    env = dict(farm["env"], LG_USERNAME="plugin-job")
    monkeypatch.setenv("LG_USERNAME", "plugin-job")     # the job acquires, then runs pytest
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    with Farm(farm["env"]["LG_COORDINATOR"]) as job, job.acquired([place]):
        r = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
             "--rootdir", str(tmp_path), "--lg-env", str(tmp_path / "env.yaml"),
             "--tinygen-board", BOARD, "--tinygen-model", str(QUICKSTART / "model.h5"),
             "--tinygen-calib", str(QUICKSTART / "calib.npy"),
             "--tinygen-build-dir", str(tmp_path / "build"), str(tmp_path / "test_on_place.py")],
            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
        # the job's own `tinygen verify` uses the place it holds and leaves it held
        v = _verify(farm, "--place", place, samples=1, env=env)
        assert v.returncode == 0, v.stderr
        assert job.places()[place].acquired == job.user
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 passed" in r.stdout
    # a render, not a compile: the place's board runs the farm's firmware
    assert not list((tmp_path / "build").glob(".pio/build/*/firmware.elf"))
    assert set(_acquired(farm).values()) == {None}


# The faults break the farm: they run last.

@pytest.mark.slow
def test_fault_a_board_killed_mid_run(farm, tmp_path):
    victim = farm["places"][1]
    out = tmp_path / "k.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tinygen.cli", "verify", "--place-tag", f"board={BOARD}",
         QUICKSTART / "model.h5", "--calib", QUICKSTART / "calib.npy", "--samples", "60",
         "--json", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=farm["env"])
    seen = ""
    while f"{victim['name']}: device: " not in seen:       # the victim is mid-run
        line = proc.stderr.readline()
        assert line, "verify ended before the board was killed"
        seen += line
    os.kill(victim["qemu_pid"], signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 2
    payload = json.loads(out.read_text())
    first, second = payload["boards"]
    assert first["place"] == farm["places"][0]["name"] and first["passed"] and first["bit_exact"]
    assert second["place"] == victim["name"] and "serial link lost" in second["error"]
    assert "FAIL: 1 of 2 boards verified" in stdout
    assert _error_lines(stderr) == [f"tinygen: error: 1 of 2 boards could not be verified: "
                                    f"{victim['name']}: {second['error']}"]
    assert set(_acquired(farm).values()) == {None}


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupted_verify_releases_its_place(farm, stop):
    """Ctrl-C at the terminal or a CI job cancelled with SIGTERM, mid-run:
    one line, exit 130, no verdict, and the place is free for the next job."""
    place = farm["places"][0]["name"]     # the other board was killed above
    proc = subprocess.Popen(
        [sys.executable, "-m", "tinygen.cli", "verify", "--place", place,
         QUICKSTART / "model.h5", "--calib", QUICKSTART / "calib.npy", "--samples", "200"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=farm["env"])
    seen = ""
    while "device: " not in seen:
        line = proc.stderr.readline()
        assert line, f"verify ended before it was interrupted: {seen}"
        seen += line
    assert _acquired(farm)[place] is not None            # held while it runs
    proc.send_signal(stop)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "PASS" not in stdout and "FAIL" not in stdout
    assert stderr.strip().splitlines()[-1] == "tinygen: interrupted"
    assert _acquired(farm)[place] is None


@pytest.mark.slow
def test_fault_exporter_then_coordinator_gone(farm):
    os.kill(farm["exporter_pid"], signal.SIGTERM)
    deadline = time.monotonic() + 20
    while _pids_alive([farm["exporter_pid"]]) and time.monotonic() < deadline:
        time.sleep(0.1)
    r = _verify(farm, "--place", farm["places"][0]["name"], samples=1)
    assert r.returncode == 2
    assert _error_lines(r.stderr) == [
        f"tinygen: error: place {farm['places'][0]['name']} has no available serial port (a "
        "NetworkSerialPort it matches): its exporter is gone or was never started (matches: "
        f"{farm['exporter']}/{farm['places'][0]['name']}/*)"]
    assert set(_acquired(farm).values()) == {None}
    os.kill(farm["coordinator_pid"], signal.SIGTERM)
    deadline = time.monotonic() + 20
    while _pids_alive([farm["coordinator_pid"]]) and time.monotonic() < deadline:
        time.sleep(0.1)
    r = _verify(farm, "--place-tag", f"board={BOARD}", samples=1)
    assert r.returncode == 2
    assert len(_error_lines(r.stderr)) == 1
    assert f"labgrid coordinator at {farm['coordinator']} does not answer" in r.stderr
