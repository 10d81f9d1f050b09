"""Paths as users name them: spaces, non-ASCII letters, other projects.

tinygen passes paths to PlatformIO, the compiler, the linker and QEMU; a path
that splits at a space once made the linker write its map file over a file
outside the project (`-o "profile backup"` emptied `./.profile`).
"""

import os
import shutil
from pathlib import Path

import pytest
from conftest import ROOT, run_cli

QUICKSTART = ROOT / "examples" / "quickstart"


def snapshot(root: Path, skip: Path) -> dict:
    """Every file and folder under root but `skip`: (kind, size, mtime)."""
    seen = {}
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        if here == skip or skip in here.parents:
            dirs[:] = []
            continue
        for name in dirs + files:
            p = here / name
            if p == skip:
                continue
            st = p.lstat()
            seen[str(p.relative_to(root))] = (p.is_dir(), st.st_size if not p.is_dir() else 0,
                                             st.st_mtime_ns if not p.is_dir() else 0)
    return seen


@pytest.mark.slow
def test_spaces_and_non_ascii_in_every_path(tmp_path):
    work = tmp_path / "my work dir"
    work.mkdir()
    shutil.copyfile(QUICKSTART / "model.h5", work / "my model.h5")
    shutil.copyfile(QUICKSTART / "calib.npy", work / "calib data.npy")
    # decoys named like the pieces a split path would produce
    (work / ".profile").write_text("keep me\n")
    (work / "out").write_text("keep me too\n")
    out = work / "out dir é" / "proj ü"
    before = snapshot(tmp_path, out)
    r = run_cli("verify", "my model.h5", "--calib", "calib data.npy", "--samples", 3,
                "-o", "out dir é/proj ü", "--json", "out dir é/proj ü.json", cwd=work,
                timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "PASS: bit-exact" in r.stdout
    assert (out / ".pio" / "build" / "qemu-stm32f405" / "firmware.map").is_file()
    after = snapshot(tmp_path, out)
    report = "out dir é/proj ü.json"
    created = sorted(set(after) - set(before))
    # -o's parent (made for it) and the report the user asked for: nothing else
    assert created == ["my work dir/out dir é", "my work dir/" + report], created
    assert {k: v for k, v in after.items() if k in before} == before
    assert (work / ".profile").read_text() == "keep me\n"


def test_other_boards_project_is_not_rebuilt_silently(cnn_tflite, tmp_path):
    out = tmp_path / "proj"
    r = run_cli("build", "--board", "esp32dev", cnn_tflite, "-o", out, "--no-compile")
    assert r.returncode == 0, r.stderr
    r = run_cli("build", "--board", "nucleo_f446re", cnn_tflite, "-o", out, "--no-compile")
    assert r.returncode == 2
    assert "holds the project for board esp32dev, not nucleo_f446re" in r.stderr
    assert "Traceback" not in r.stderr
    # the same board rebuilds in place
    r = run_cli("build", "--board", "esp32dev", cnn_tflite, "-o", out, "--no-compile")
    assert r.returncode == 0, r.stderr


def test_project_folder_gets_ordinary_permissions(cnn_tflite, tmp_path):
    out = tmp_path / "proj"
    r = run_cli("build", "--board", "esp32dev", cnn_tflite, "-o", out, "--no-compile")
    assert r.returncode == 0, r.stderr
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask
