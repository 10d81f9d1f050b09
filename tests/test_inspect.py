"""inspect: arena figures against the tflite_micro interpreter, MACs against hand counts."""

import json
import re
import subprocess
import sys

from conftest import run_cli


def tflm_arena_measured_independently(tflite_path):
    code = (
        "import sys, numpy as np\n"
        "from tflite_micro.python.tflite_micro import runtime\n"
        "b = open(sys.argv[1], 'rb').read()\n"
        "it = runtime.Interpreter.from_bytes(b, arena_size=1 << 20)\n"
        "d = it.get_input_details(0)\n"
        "it.set_input(np.zeros(d['shape'], d['dtype']), 0)\n"
        "it.invoke()\n"
        "it.print_allocations()\n")
    out = subprocess.run([sys.executable, "-c", code, str(tflite_path)], capture_output=True,
                         text=True, check=True)
    text = out.stdout + out.stderr
    return {k: int(re.search(rf"Arena allocation {k} (\d+) bytes", text).group(1))
            for k in ("total", "head", "tail")}


def test_inspect_arena_matches_tflm(cnn_tflite):
    r = run_cli("inspect", cnn_tflite, "--json")
    assert r.returncode == 0, r.stderr
    a = json.loads(r.stdout)
    assert a["tflm_arena"] == tflm_arena_measured_independently(cnn_tflite)
    assert a["tflm_arena_planned"] >= a["tflm_arena"]["total"]


def test_inspect_macs_hand_counted(cnn_tflite):
    r = run_cli("inspect", cnn_tflite, "--json")
    a = json.loads(r.stdout)
    macs = {op["opcode"]: op["macs"] for op in a["ops"]}
    # 12x12x3 -> Conv2D(6, 3x3, valid) -> 10x10x6: 10*10*6 outputs x 3*3*3 taps
    assert macs["CONV_2D"] == 10 * 10 * 6 * 27
    # depthwise 3x3 same on 10x10x6
    assert macs["DEPTHWISE_CONV_2D"] == 10 * 10 * 6 * 9
    # maxpool -> 5x5x6 = 150 features -> Dense(5)
    assert macs["FULLY_CONNECTED"] == 150 * 5
    assert a["macs"] == sum(macs.values())
    conv = next(op for op in a["ops"] if op["opcode"] == "CONV_2D")
    assert conv["params"] == 6 * 27 + 6 and conv["weights_biases_bytes"] == 6 * 27 + 6 * 4
    assert conv["tflm_method"] == "AddConv2D"


def test_inspect_board_fit_in_bytes(cnn_tflite):
    r = run_cli("inspect", cnn_tflite, "--board", "nucleo_l432kc")
    assert r.returncode == 0, r.stderr
    assert re.search(r"fit on nucleo_l432kc \(tflm\): fits: total flash [\d,]+ of 262,144 B", r.stdout)
    assert "AddDepthwiseConv2D" in r.stdout
