"""Options of this HIL suite (the --tinygen-* ones come from tinygen's pytest plugin)."""


def pytest_addoption(parser):
    parser.addoption("--max-latency", type=int, default=2_000_000, metavar="N",
                     help="latency bound per inference, in the device's counter unit "
                          "(cycles on a real board, instructions under QEMU); default 2,000,000")
