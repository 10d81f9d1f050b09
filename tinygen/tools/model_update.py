"""Front end of model updates: `tinygen keygen`, `image`, `update`, `models`
and the `--updatable` options of `tinygen build` (docs/model-update.md)."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import TinygenError

IMAGE_SUFFIX = ".tgimg"


def add_build_args(sp) -> None:
    sp.add_argument("--updatable", action="store_true",
                    help="keep the model in signed, versioned slots that `tinygen update` "
                         "replaces without reflashing (needs --signing-key; "
                         "docs/model-update.md)")
    sp.add_argument("--signing-key", metavar="PEM",
                    help="Ed25519 private key (from `tinygen keygen`): its public half is "
                         "compiled in, the built-in model image is signed with it")
    sp.add_argument("--model-version", default="1.0.0", metavar="V",
                    help="version of the built-in model image (MAJOR.MINOR.REVISION[+BUILD], "
                         "default 1.0.0)")
    sp.add_argument("--security-counter", type=int, default=0, metavar="N",
                    help="anti-rollback counter of the image (default 0)")
    sp.add_argument("--slots", type=int, default=2, metavar="N",
                    help="updatable slots besides the built-in one (1..3, default 2)")
    sp.add_argument("--fault-injection", action="store_true",
                    help="power-loss campaign firmware: the host may make the board reset at "
                         "any flash operation (never for a product)")


def update_config(args):
    """The UpdateConfig of `tinygen build` options, or None."""
    if not getattr(args, "updatable", False):
        for opt in ("signing_key", "fault_injection"):
            if getattr(args, opt, None):
                raise TinygenError(f"--{opt.replace('_', '-')} is for --updatable builds")
        return None
    from ..project.updatable import UpdateConfig
    from ..update import keys
    from ..update.image import Version
    if not args.signing_key:
        raise TinygenError("--updatable needs --signing-key PEM (make one with "
                           "`tinygen keygen update-key.pem`, and keep it secret)")
    key = keys.load_private(args.signing_key)
    _check_counter(args.security_counter)
    return UpdateConfig(public_key=keys.public_bytes(key), version=Version.parse(args.model_version),
                        security_counter=args.security_counter, slots=args.slots,
                        fault_injection=args.fault_injection, sign=keys.signer(key))


def _check_counter(n: int) -> None:
    if not 0 <= n <= 0xFFFFFFFF:
        raise TinygenError(f"--security-counter {n} is out of range (0 .. 4294967295)")


def add_commands(sub) -> None:
    sp = sub.add_parser("keygen", help="make an Ed25519 key for signing model images",
                        description="Write a new Ed25519 private key (PKCS#8 PEM, as `imgtool "
                                    "keygen -t ed25519`); never overwrites a file.")
    sp.add_argument("key", help="output file, e.g. update-key.pem")
    sp.set_defaults(func=cmd_keygen)

    def image_args(p):
        p.add_argument("--project", metavar="DIR",
                       help="the --updatable project the device runs (its tinygen.json says "
                            "which architecture and key the image must fit)")
        p.add_argument("--signing-key", metavar="PEM", help="Ed25519 private key")
        p.add_argument("--model-version", metavar="V", help="version of the new image, newer "
                       "than the running one (MAJOR.MINOR.REVISION[+BUILD])")
        p.add_argument("--security-counter", type=int, default=0, metavar="N",
                       help="anti-rollback counter (default 0)")
        p.add_argument("--calib", metavar="FILE", help="calibration inputs (Keras models)")

    sp = sub.add_parser("image", help="make a signed model image for `tinygen update`",
                        description="Convert the model if needed, check that it fits the "
                                    "updatable project's firmware, and write the signed image.")
    sp.add_argument("model", help="Keras .h5/.keras file, SavedModel directory or .tflite")
    image_args(sp)
    sp.add_argument("-o", "--output", metavar="FILE", required=True, help="image file (.tgimg)")
    sp.set_defaults(func=cmd_image)

    sp = sub.add_parser("update", help="install a new model on a running device, or switch slots",
                        description="Send a model image in chunks, have the device verify its "
                                    "signature and run its self-test, then activate it; or "
                                    "--activate a stored slot.  The running model keeps running "
                                    "when anything is refused.")
    sp.add_argument("model", nargs="?", help="a signed image (.tgimg) or a model (then "
                    "--project, --signing-key and --model-version make its image)")
    sp.add_argument("--port", required=True, metavar="URL",
                    help="serial port or pyserial URL (for `tinygen flash` of an emulated "
                         "board: the socket:// URL it prints)")
    sp.add_argument("--baud", type=int, default=115200)
    sp.add_argument("--activate", type=int, metavar="N", help="switch to the model in slot N")
    sp.add_argument("--full", action="store_true",
                    help="send the whole image even when a delta against the running image "
                         "(found in the project's images/) would be smaller")
    image_args(sp)
    sp.set_defaults(func=cmd_update)

    sp = sub.add_parser("slot-plan", help="partition/sector plan for model slots on a real board",
                        description="Size the model slots for MODEL (image, delta area, status "
                                    "sector) and place them on the board's flash: an ESP-IDF "
                                    "partitions.csv for ESP32 boards, whole erase sectors for "
                                    "STM32 boards; checked for alignment, overlap and room for "
                                    "the application.  Only the plan: the slot code has no "
                                    "flash driver for real boards yet (docs/model-update.md).")
    sp.add_argument("model", help="Keras .h5/.keras file, SavedModel directory or .tflite")
    sp.add_argument("--board", required=True)
    sp.add_argument("--slots", type=int, default=2, metavar="N")
    sp.add_argument("--runtime", choices=["aot", "tflm"], default="aot",
                    help="aot: the slots hold the weights; tflm: the whole .tflite")
    sp.add_argument("--app-bytes", type=int, default=0, metavar="N",
                    help="flash the application needs (default: the model's code estimate)")
    sp.add_argument("--calib", metavar="FILE", help="calibration inputs (Keras models)")
    sp.add_argument("-o", "--output", metavar="FILE", help="write the plan (partitions.csv ...)")
    sp.set_defaults(func=cmd_slot_plan)

    sp = sub.add_parser("models", help="list a device's model slots",
                        description="Slots, versions, model SHA-256s and which one runs.")
    sp.add_argument("--port", required=True, metavar="URL")
    sp.add_argument("--baud", type=int, default=115200)
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_models)


def cmd_keygen(args, con) -> int:
    from ..update import keys
    pub = keys.generate(args.key)
    con.out(f"wrote {args.key} (Ed25519, keep it secret); public key {pub.hex()}")
    return 0


def project_update(project: str | None) -> tuple[Path, dict, dict]:
    if not project:
        raise TinygenError("making an image needs --project DIR (the updatable project the "
                           "device runs)")
    path = Path(project)
    try:
        manifest = json.loads((path / "tinygen.json").read_text())
    except (OSError, ValueError):
        raise TinygenError(f"{path} is not a tinygen project (no readable tinygen.json)") from None
    update = manifest.get("update")
    if not update:
        raise TinygenError(f"{path} was not built with --updatable: its firmware has no model "
                           "slots")
    return path, manifest, update


def make_image(model: str, args, con) -> bytes:
    from ..convert import convert
    from ..load import load_model
    from ..update import keys
    from ..update.image import Version
    from ..update.make import check_fits, image_for, payload_for
    _path, manifest, update = project_update(args.project)
    if not args.signing_key:
        raise TinygenError("making an image needs --signing-key PEM (the key the project was "
                           "built with)")
    if not args.model_version:
        raise TinygenError("making an image needs --model-version V, newer than the running "
                           f"model's (the project's built-in one is {update['model_version']})")
    version = Version.parse(args.model_version)
    _check_counter(args.security_counter)
    key = keys.load_private(args.signing_key)
    if keys.public_bytes(key).hex() != update["public_key"]:
        raise TinygenError(f"{args.signing_key} is not the key the project was built with: the "
                           "device would refuse the image's signature")
    con.progress(f"loading {model}")
    ir = convert(load_model(Path(model)), Path(args.calib) if args.calib else None,
                 progress=con.progress).ir
    payload = payload_for(update.get("runtime", "aot"), ir, manifest["board"],
                          manifest.get("c_name", "model"))
    check_fits(payload, update["fingerprint"], update["arena_bytes"], model)
    con.progress("running the self-test vectors on the tflite_micro reference; signing")
    image = image_for(ir, payload, version, keys.signer(key), args.security_counter)
    if len(image) > update["image_area_bytes"]:
        raise TinygenError(f"the image is {len(image)} B, the device's slots hold "
                           f"{update['image_area_bytes']} B")
    from ..update.delta import keep
    keep(_path / update["image_dir"], image)
    return image


def cmd_image(args, con) -> int:
    from ..update.image import parse_image
    image = make_image(args.model, args, con)
    out = Path(args.output)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_bytes(image)
    tmp.replace(out)
    parsed = parse_image(image)
    con.out(f"wrote {out}: {len(image)} B, version {parsed.version}, model SHA-256 "
            f"{parsed.meta.model_sha256.hex()[:16]}...")
    return 0


def _load_image(args, con) -> bytes:
    from ..update.image import check_image, parse_image
    path = Path(args.model)
    if path.suffix == IMAGE_SUFFIX:
        try:
            image = path.read_bytes()
        except OSError as exc:
            raise TinygenError(f"cannot read {path}: {exc.strerror}") from None
        parsed = parse_image(image)
        key = None
        if args.project:
            key = bytes.fromhex(project_update(args.project)[2]["public_key"])
        check_image(parsed, key)
        return image
    return make_image(args.model, args, con)


def cmd_update(args, con) -> int:
    from ..device.client import open_device
    from ..device.slots import activate, read_slots, send_image
    if args.activate is not None:
        if args.model:
            raise TinygenError("give either a model/image to install or --activate N, not both")
        with open_device(args.port, args.baud) as dev:
            verify_ticks, selftest_ticks = activate(dev, args.activate)
            table = read_slots(dev)
        s = table.active_slot
        con.out(f"slot {s.index} active: version {s.version}, model SHA-256 "
                f"{s.model_sha256[:16]}... (verify {verify_ticks:,}, self-test "
                f"{selftest_ticks:,} counter ticks)")
        return 0
    if not args.model:
        raise TinygenError("nothing to do: give a model or image to install, or --activate N")
    image = _load_image(args, con)
    with open_device(args.port, args.baud) as dev:
        base = None
        if args.project and not args.full:
            # a delta against the running image, when the project kept it
            from ..update.delta import find_base
            running = read_slots(dev).active_slot
            _p, _m, update = project_update(args.project)
            base = find_base(Path(args.project) / update["image_dir"], running.version,
                             running.model_sha256)
        r = send_image(dev, image, lambda done, total: con.progress(f"sent {done}/{total} B"),
                       base=base)
        table = read_slots(dev)
    s = table.active_slot
    resumed = f", resumed at {r.resumed_from} B" if r.resumed_from else ""
    how = (f"a {r.bytes_sent:,} B delta instead of the {r.image_bytes:,} B image" if r.delta
           else f"{r.bytes_sent:,} B")
    con.out(f"installed in slot {r.slot} and active: version {s.version}, model SHA-256 "
            f"{s.model_sha256[:16]}... ({how} in {r.chunks} chunks{resumed}; "
            f"verify {r.verify_ticks:,}, self-test {r.selftest_ticks:,} counter ticks)")
    return 0


def cmd_models(args, con) -> int:
    from ..device.client import open_device
    from ..device.slots import read_slots
    with open_device(args.port, args.baud) as dev:
        table = read_slots(dev)
    if args.json:
        con.out(json.dumps({"active": table.active, "security_floor": table.security_floor,
                            "boot_failed_slot": table.boot_failed_slot,
                            "slots": [vars(s) for s in table.slots]}, indent=2))
        return 0
    con.out(f"{'slot':>4}  {'kind':8} {'state':9} {'version':10} {'size':>8}  model SHA-256")
    for s in table.slots:
        mark = "*" if s.index == table.active else " "
        kind = "built-in" if s.builtin else "update"
        size = f"{s.size:,}" if s.size else "-"
        extra = (f"  {s.received:,}/{s.size:,} B received" if s.state == "receiving"
                 else f"  ({s.why})" if s.why else "")
        con.out(f"{mark}{s.index:>3}  {kind:8} {s.state:9} {s.version or '-':10} {size:>8}  "
                f"{s.model_sha256[:16] or '-'}{extra}")
    if table.boot_failed_slot is not None:
        from ..device.framing import UPDATE_REASONS
        why = UPDATE_REASONS.get(table.boot_reason, f"reason {table.boot_reason}")
        con.warn(f"at boot slot {table.boot_failed_slot} failed verification ({why}): "
                 f"running slot {table.active} instead")
    return 0


def cmd_slot_plan(args, con) -> int:
    from ..boards import get_board
    from ..convert import convert
    from ..load import load_model
    from ..project.flash_plan import plan_for
    from ..update.image import Version
    from ..update.make import image_for, payload_for
    board = get_board(args.board)
    ir = convert(load_model(Path(args.model)), Path(args.calib) if args.calib else None,
                 progress=con.progress).ir
    payload = payload_for(args.runtime, ir, board.id, "model")
    image = image_for(ir, payload, Version(1), lambda _d: bytes(64))   # sizes only
    # room to grow: the slot code sizes the image area one sector larger
    app = args.app_bytes or 64 * 1024 + len(image)
    plan = plan_for(board, len(image), args.slots, app)
    text = plan.text()
    if args.output:
        Path(args.output).write_text(text)
        con.out(f"wrote {args.output}")
    con.out(text.rstrip())
    con.out(f"# image {len(image):,} B, slot {plan.slot_bytes:,} B, application >= {app:,} B; "
            "checked: inside the flash, aligned, no overlap")
    return 0
