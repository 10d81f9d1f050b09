# tinygen-qemu: PlatformIO builder for the emulated Cortex-M boards.
#
# Compiles the project's src/ and lib/ (PlatformIO core does that through
# BuildProgram) plus this platform's board support (bsp/), links with the
# board's linker script from ldscripts/ and produces firmware.elf and
# firmware.bin.  Nothing is uploaded: `tinygen flash` starts QEMU instead.

import os
import re

import SCons.CacheDir  # pylint: disable=import-error
import SCons.Util  # pylint: disable=import-error
from SCons.Script import (  # pylint: disable=import-error
    COMMAND_LINE_TARGETS,
    AlwaysBuild,
    Builder,
    Default,
    DefaultEnvironment,
)

env = DefaultEnvironment()
platform = env.PioPlatform()
board = env.BoardConfig()

PLATFORM_DIR = os.path.realpath(platform.get_dir())
BSP_DIR = os.path.join(PLATFORM_DIR, "bsp")
# tg_hal.h lives next to this platform in tinygen's firmware_templates/.
COMMON_DIR = os.path.realpath(os.path.join(PLATFORM_DIR, "..", "common"))
if not os.path.isfile(os.path.join(COMMON_DIR, "tg_hal.h")):
    env.Exit(
        "tinygen-qemu: %s/tg_hal.h not found; install the platform with "
        "`platform = symlink://<tinygen>/firmware_templates/pio_platform`"
        % COMMON_DIR
    )

BSP = board.get("build.tinygen_bsp")  # "stm32f405", "mps2", "esp32c3", "esp8266"
# One platform, one builder, per-architecture settings: "arm" (the Cortex-M
# boards, Debian's arm-none-eabi with newlib-nano), "riscv32" (qemu-esp32c3)
# and "xtensa" (qemu-esp8266), both with Debian's picolibc and no libstdc++.
ARCH = board.get("build.tinygen_arch", "arm")
if ARCH == "arm":
    MACHINE_FLAGS = ["-mthumb", "-mcpu=%s" % board.get("build.cpu")]
    if board.get("build.fpu", ""):
        MACHINE_FLAGS += [
            "-mfpu=%s" % board.get("build.fpu"),
            "-mfloat-abi=%s" % board.get("build.float_abi", "hard"),
        ]
    else:
        MACHINE_FLAGS += ["-mfloat-abi=soft"]
    LINK_MACHINE_FLAGS = MACHINE_FLAGS
    PREFIX = "arm-none-eabi-"
    LIBC_FLAGS = []
    LIBC_LINKFLAGS = ["--specs=nano.specs", "--specs=nosys.specs"]
    LINKER = "$CXX"  # the TFLM glue is C++; g++ adds libstdc++ when needed
    BSP_SOURCES = ["startup.c", "hal.c", "tg_memory.c", "tg_fault_text.c", "board_%s.c" % BSP]
    FLASH_SECTIONS = r"\.isr_vector|\.text|\.rodata|\.ARM\.extab|\.ARM\.exidx"
elif ARCH in ("riscv32", "xtensa"):
    # RISC-V: compile with the CSR extension, link with -march=rv32imc so gcc
    # picks its rv32im/ilp32 multilib (with _zicsr it falls back to rv64).
    MACHINE_FLAGS = board.get("build.cflags_machine", "").split()
    LINK_MACHINE_FLAGS = board.get("build.link_machine", "").split()
    PREFIX = board.get("build.toolchain_prefix")
    # Debian's xtensa-lx106 gcc does not find picolibc.specs by name.
    SPECS = board.get("build.libc_specs", "picolibc.specs")
    LIBC_FLAGS = ["--specs=" + SPECS]
    LIBC_LINKFLAGS = ["--specs=" + SPECS, "-nostartfiles",
                      "-Wl,--no-warn-rwx-segments"]
    LINKER = "$CC"  # no libstdc++ for these cores: tg_cxx_min.c has new/delete
    BSP_SOURCES = ["hal.c", "tg_memory.c", "tg_fault_text.c", "tg_cxx_min.c"] + board.get("build.tinygen_bsp_sources").split()
    FLASH_SECTIONS = r"\.text|\.rodata|\.literal|\.irom0\.text|\.irom0\.rodata|\.flash\.rodata"
else:
    env.Exit("tinygen-qemu: unknown build.tinygen_arch %r" % ARCH)

env.Replace(
    AR=PREFIX + "gcc-ar",
    AS=PREFIX + "as",
    CC=PREFIX + "gcc",
    CXX=PREFIX + "g++",
    GDB=PREFIX + "gdb",
    OBJCOPY=PREFIX + "objcopy",
    RANLIB=PREFIX + "gcc-ranlib",
    SIZETOOL=PREFIX + "size",
    LINK=LINKER,
    ARFLAGS=["rc"],
    PROGNAME="firmware",
    PROGSUFFIX=".elf",
    # Used by PlatformIO's "checkprogsize" against upload.maximum_*size.
    SIZECHECKCMD="$SIZETOOL -A -d $SOURCES",
    SIZEPROGREGEXP=r"^(?:" + FLASH_SECTIONS +
    r"|\.preinit_array|\.init_array|\.fini_array|\.data)\s+(\d+).*",
    SIZEDATAREGEXP=r"^(?:\.data|\.bss|\.stack)\s+(\d+).*",
    SIZEPRINTCMD="$SIZETOOL -B -d $SOURCES",
)

env.Append(
    ASFLAGS=MACHINE_FLAGS,
    ASPPFLAGS=["-x", "assembler-with-cpp"] + LIBC_FLAGS,
    CCFLAGS=MACHINE_FLAGS
    + LIBC_FLAGS
    + [
        "-O2",
        "-g",
        "-ffunction-sections",
        "-fdata-sections",
        "-Wall",
    ],
    CFLAGS=["-std=gnu11"],
    CXXFLAGS=[
        "-std=gnu++17",
        "-fno-exceptions",
        "-fno-rtti",
        "-fno-threadsafe-statics",
    ],
    # Only what every emulated board shares: libraries (TFLM) then compile the
    # same for all boards of a core and come from the build cache.
    CPPDEFINES=[("TG_QEMU_BOARD", 1)],
    CPPPATH=[os.path.join(BSP_DIR, "include")],
    LINKFLAGS=LINK_MACHINE_FLAGS
    + LIBC_LINKFLAGS
    + [
        "-O2",
        "-Wl,--gc-sections",
    ],
    LIBS=["m"],
)

# One argument, quoted by SCons (a Literal is neither expanded nor split): with
# "$BUILD_DIR" expanded in place, a project path holding a space split the flag
# and the linker wrote its map over a file outside the project.
env.Append(LINKFLAGS=[env.Literal("-Wl,-Map=" + env.subst("$BUILD_DIR/${PROGNAME}.map"))])

# PlatformIO's build cache (build_cache_dir), shared by every project.  SCons
# keys an object by its inputs' contents, its command line and its path in the
# build folder; PlatformIO names a library's folder lib<3 hex digits of its
# absolute path>, so the same library in two projects never shared an object.
# The key here drops those digits: TFLM's objects are then compiled once per
# tree, core and flags, and every later project links them from the cache.
_LIB_FOLDER = re.compile(r"(^|[/\\])lib[0-9a-f]{3}(?=[/\\])")


class ProjectIndependentCache(SCons.CacheDir.CacheDir):
    def cachepath(self, node):
        if not self.is_enabled():
            return None, None
        sigs = [child.get_cachedir_csig() for child in node.children()]
        sigs.append(node.get_contents_sig())
        sigs.append(_LIB_FOLDER.sub(r"\1lib", node.get_internal_path()))
        sig = SCons.Util.hash_collect(sigs)
        folder = os.path.join(self.path, sig[: self.config["prefix_len"]].upper())
        return folder, os.path.join(folder, sig)


if env.subst("$BUILD_CACHE_DIR"):
    env.CacheDir("$BUILD_CACHE_DIR", custom_class=ProjectIndependentCache)

# The board support is compiled with its own strict flags and without the
# project's build_flags, and linked as objects (not an archive) so that the
# vector table is always kept.
bsp_env = env.Clone()
bsp_env.Append(
    CPPDEFINES=[("F_CPU", "$BOARD_F_CPU"), "TG_QEMU_BSP_%s" % BSP.upper()],
    CCFLAGS=["-Wextra", "-Werror"],
    CPPPATH=[os.path.join(BSP_DIR, "src"), COMMON_DIR],
)
env.Append(
    PIOBUILDFILES=[
        bsp_env.Object(
            os.path.join("$BUILD_DIR", "tinygen_bsp", os.path.splitext(name)[0].replace("/", "_")),
            os.path.join(BSP_DIR, "src", name),
        )
        for name in BSP_SOURCES
    ]
)

env.Append(
    BUILDERS=dict(
        ElfToBin=Builder(
            action=env.VerboseAction(
                "$OBJCOPY -O binary $SOURCES $TARGET", "Building $TARGET"
            ),
            suffix=".bin",
        )
    )
)

if "nobuild" in COMMAND_LINE_TARGETS:
    target_elf = os.path.join("$BUILD_DIR", "${PROGNAME}.elf")
    target_bin = os.path.join("$BUILD_DIR", "${PROGNAME}.bin")
else:
    target_elf = env.BuildProgram()
    target_bin = env.ElfToBin(os.path.join("$BUILD_DIR", "${PROGNAME}"), target_elf)

AlwaysBuild(env.Alias("nobuild", target_bin))
target_buildprog = env.Alias("buildprog", target_bin, target_bin)

# PlatformIO core swaps "size" for "checkprogsize", which prints the Flash and
# RAM usage against the board's upload.maximum_size / maximum_ram_size.
target_size = env.Alias(
    "size", target_elf, env.VerboseAction("$SIZEPRINTCMD", "Calculating size $SOURCE")
)
AlwaysBuild(target_size)


def _upload(target, source, env):  # pylint: disable=unused-argument
    print(
        "Emulated board %s (QEMU machine %s): nothing to upload; "
        "`tinygen flash` starts %s with %s"
        % (
            env.subst("$BOARD"),
            board.get("build.qemu_machine"),
            board.get("build.qemu_binary", "qemu-system-arm"),
            env.subst("$BUILD_DIR/${PROGNAME}.elf"),
        )
    )


AlwaysBuild(
    env.Alias(
        "upload", target_bin, env.VerboseAction(_upload, "Nothing to upload (emulated board)")
    )
)

Default([target_buildprog, target_size])
