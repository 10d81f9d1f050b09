"""build: PlatformIO projects for real boards (rendered and checked as far as offline allows)."""

import json
import re
import shutil
import subprocess
import sys

from conftest import run_cli

from tinygen.ir import parse_tflite

# Written out by hand from TFLM's MicroMutableOpResolver, independently of tinygen's table.
EXPECTED_METHOD = {
    "CONV_2D": "AddConv2D", "DEPTHWISE_CONV_2D": "AddDepthwiseConv2D",
    "MAX_POOL_2D": "AddMaxPool2D", "RESHAPE": "AddReshape",
    "FULLY_CONNECTED": "AddFullyConnected", "SOFTMAX": "AddSoftmax",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "AddUnidirectionalSequenceLSTM",
    "TFLite_Detection_PostProcess": "AddDetectionPostprocess",
    "CONCATENATION": "AddConcatenation", "LOGISTIC": "AddLogistic", "DEQUANTIZE": "AddDequantize",
    "QUANTIZE": "AddQuantize", "ADD": "AddAdd", "MUL": "AddMul", "TANH": "AddTanh",
    "STRIDED_SLICE": "AddStridedSlice", "PACK": "AddPack",
}


def resolver_calls(glue: str):
    n = int(re.search(r"MicroMutableOpResolver<(\d+)>", glue).group(1))
    calls = re.findall(r"resolver->(Add\w+)\((?:tflite::Register_\w+\(\))?\)", glue)
    return n, calls


def check_project(out, tflite_ir, board):
    glue = (out / "src" / "tg_model_tflm.cc").read_text()
    n, calls = resolver_calls(glue)
    expected = [EXPECTED_METHOD[name] for name in tflite_ir.op_names()]
    assert calls == expected and n == len(expected)
    assert "ErrorReporter" not in glue and "AllOpsResolver" not in glue
    assert "tflite::InitializeTarget()" in glue
    manifest = json.loads((out / "tinygen.json").read_text())
    assert manifest["board"] == board and manifest["runtime"] == "tflm"
    arena = int(re.search(r"kArenaBytes = (\d+);", glue).group(1))
    measured = int(re.search(r"recording allocator: (\d+) bytes", glue).group(1))
    assert arena >= measured
    data_c = (out / "src" / "model_data.c").read_text()
    assert "aligned(16)" in data_c
    assert f"= {len(tflite_ir.tflite)};" in data_c
    assert (out / "model.tflite").read_bytes() == tflite_ir.tflite
    ini = (out / "platformio.ini").read_text()
    assert f"board = {board}" in ini
    cfg = subprocess.run([sys.executable, "-m", "platformio", "project", "config", "-d", str(out)],
                         capture_output=True, text=True, timeout=120)
    assert cfg.returncode == 0, cfg.stdout + cfg.stderr
    return glue, manifest


def test_build_esp32cam(cnn_h5, cnn_calib, tmp_path):
    out = tmp_path / "esp32cam"
    r = run_cli("build", "--board", "esp32cam", cnn_h5, "--calib", cnn_calib, "-o", out)
    assert r.returncode == 0, r.stderr
    ir = parse_tflite((out / "model.tflite").read_bytes())
    check_project(out, ir, "esp32cam")
    comp = (out / "src" / "idf_component.yml").read_text()
    assert "espressif/esp-tflite-micro" in comp
    assert "framework = espidf" in (out / "platformio.ini").read_text()
    assert "app_main" in (out / "src" / "tg_hal_espidf.c").read_text()
    assert re.search(r"model flash: +[\d,]+ B\n\s+code flash: .*\n\s+arena: +[\d,]+ B", r.stdout)
    assert "ready for `pio run`" in r.stdout


def test_build_nucleo_refuses_an_incomplete_tflm_tree(cnn_tflite, tmp_path):
    # (real trees: tests/test_tflm_runtime.py)
    tree = tmp_path / "tflm_tree"
    (tree / "tensorflow" / "lite" / "micro").mkdir(parents=True)
    (tree / "tensorflow" / "lite" / "micro" / "micro_interpreter.h").write_text("// stub\n")
    (tree / "third_party" / "flatbuffers" / "include").mkdir(parents=True)
    out = tmp_path / "nucleo"
    r = run_cli("build", "--board", "nucleo_f446re", cnn_tflite, "--runtime", "tflm",
                "--tflm-source", tree, "-o", out)
    assert r.returncode == 2, r.stderr
    assert "incomplete TFLM tree" in r.stderr and "micro_mutable_op_resolver.h" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_rebuild_replaces_previous_project(cnn_tflite, tmp_path):
    out = tmp_path / "p"
    for _ in range(2):
        r = run_cli("build", "--board", "esp32dev", cnn_tflite, "-o", out)
        assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p"]


def test_build_lstm_model_resolver(keras, tmp_path):
    keras.utils.set_random_seed(2)
    m = keras.Sequential([keras.Input((20, 3)), keras.layers.LSTM(8), keras.layers.Dense(3)])
    path = tmp_path / "lstm.h5"
    m.save(path)
    calib = tmp_path / "c.npy"
    import numpy as np
    np.save(calib, np.random.default_rng(0).random((16, 20, 3), dtype=np.float32))
    out = tmp_path / "esp"
    r = run_cli("build", "--board", "esp32cam", path, "--calib", calib, "-o", out)
    assert r.returncode == 0, r.stderr
    ir = parse_tflite((out / "model.tflite").read_bytes())
    assert "UNIDIRECTIONAL_SEQUENCE_LSTM" in ir.op_names()
    glue, _ = check_project(out, ir, "esp32cam")
    assert "AddUnidirectionalSequenceLSTM" in glue


def test_build_ssd_model_resolver(tmp_path):
    """An SSD-style detector ending in the TFLite_Detection_PostProcess custom op."""
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
    import test_ssd_postprocess as t

    from tinygen import tfenv
    from tinygen.convert import ssd_postprocess as sp
    tfenv.tf()
    det = t.detector.__wrapped__(None)
    imgs = t.images.__wrapped__()
    data = sp.convert_int8(det, t._anchors(), t.OPTS, lambda: ([x] for x in imgs))
    model = tmp_path / "ssd.tflite"
    model.write_bytes(data)
    out = tmp_path / "nucleo"
    r = run_cli("build", "--board", "nucleo_h743zi", "--runtime", "tflm", model, "-o", out)
    assert r.returncode == 0, r.stderr
    ir = parse_tflite(data)
    assert "TFLite_Detection_PostProcess" in ir.op_names()
    glue, _ = check_project(out, ir, "nucleo_h743zi")
    assert "AddDetectionPostprocess" in glue


def test_build_esp32_c3_devkit_gets_an_esp_idf_tflm_project(cnn_tflite, tmp_path):
    """The ESP32-C3 is RISC-V, not Xtensa: still an ESP-IDF project with the
    espressif/esp-tflite-micro component (its emulated twin is qemu-esp32c3)."""
    out = tmp_path / "c3"
    r = run_cli("build", "--board", "esp32-c3-devkitm-1", cnn_tflite, "-o", out)
    assert r.returncode == 0, r.stderr
    check_project(out, parse_tflite(cnn_tflite.read_bytes()), "esp32-c3-devkitm-1")
    assert "espressif/esp-tflite-micro" in (out / "src" / "idf_component.yml").read_text()
    assert "framework = espidf" in (out / "platformio.ini").read_text()


def test_build_nodemcu_gets_an_arduino_aot_project(cnn_tflite, tmp_path):
    """The ESP8266 (LX106) has no ESP-IDF and no TFLM component: an Arduino-core
    project with the aot runtime, counting cycles with CCOUNT."""
    out = tmp_path / "nodemcu"
    r = run_cli("build", "--board", "nodemcuv2", cnn_tflite, "-o", out)
    assert r.returncode == 0, r.stderr
    ini = (out / "platformio.ini").read_text()
    assert "platform = espressif8266" in ini and "framework = arduino" in ini
    assert (out / "src" / "model.c").is_file() and not (out / "src" / "tg_model_tflm.cc").exists()
    hal = (out / "src" / "tg_hal_arduino.cpp").read_text()
    assert "ESP.getCycleCount()" in hal
    assert json.loads((out / "tinygen.json").read_text())["runtime"] == "aot"
    cfg = subprocess.run([sys.executable, "-m", "platformio", "project", "config", "-d", str(out)],
                         capture_output=True, text=True, timeout=120)
    assert cfg.returncode == 0, cfg.stdout + cfg.stderr
    # The weights stay in flash there too: compiled as the Arduino core would
    # (ARDUINO_ARCH_ESP8266), every weight array is in .irom.text, which its
    # linker script maps into flash, and an operator's weights are staged to RAM.
    model_c = (out / "src" / "model.c").read_text()
    assert "tg_wstage[" in model_c and "TG_IN_FLASH(" in model_c
    if shutil.which("xtensa-lx106-elf-gcc"):
        obj = tmp_path / "model.o"
        cc = subprocess.run(["xtensa-lx106-elf-gcc", "-O2", "-Wall", "-Wextra", "-Werror",
                             "-mlongcalls", "-DARDUINO_ARCH_ESP8266", "-I", str(out / "src"),
                             "-c", str(out / "src" / "model.c"), "-o", str(obj)],
                            capture_output=True, text=True)
        assert cc.returncode == 0, cc.stderr
        table = subprocess.run(["xtensa-lx106-elf-objdump", "-t", str(obj)],
                               capture_output=True, text=True, check=True).stdout
        in_flash = {line.split()[-1] for line in table.splitlines() if " .irom.text\t" in line}
        flash_arrays = set(re.findall(r"static const \w+ (\w+)\[\d+\] TG_ALIGNED\(\d+\) "
                                      r"TG_IN_FLASH", model_c))
        assert flash_arrays and flash_arrays <= in_flash, (flash_arrays, table)
    r = run_cli("build", "--board", "nodemcuv2", cnn_tflite, "--runtime", "tflm",
                "-o", tmp_path / "x")
    assert r.returncode == 2 and "does not offer the tflm runtime" in r.stderr
