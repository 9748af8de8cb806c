#!/usr/bin/env python3
"""A `llama-server` look-alike that runs llama.cpp's own server from PyPI `xllamacpp`.

It accepts llama-server's flags (and their LLAMA_ARG_* environment forms, flags
winning), applies the *binary's* defaults (not xllamacpp's), and runs llama.cpp's
C++ HTTP server in this process: /health, /v1/chat/completions (SSE), /completion,
/props, /slots, /metrics (with --metrics), /v1/models.

Differences from the real binary, on purpose:
  * --fit defaults to off (reproducible trials); pass `--fit on` to enable it.
  * --version prints `version: <xllamacpp version> (xllamacpp)`.
  * Only the flags in OPTIONS below are known; anything else is rejected like
    llama-server rejects an unknown flag.
  * SIGTERM/SIGINT end the process at once (exit 0); in-flight requests are cut.

Engine log lines go to stderr as they are. At the default verbosity (3) the buffer
sizes are not printed; `-lv 4` adds `CPU KV buffer size = ...` and the model details.
After start-up, `main: server is listening on http://HOST:PORT` is printed (useful
with --port 0). A failed start prints the engine's reason, then `exiting due to model
loading error` (or `... HTTP server error` when the port is taken), and exits 1.

Run it through `scripts/llama-server`, which execs the project venv's python.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

# ----------------------------------------------------------------------------
# settings, with llama-server (binary) defaults


@dataclass
class Settings:
    model: str = ""
    n_ctx: int = 0  # 0 = model's training context
    n_parallel: int = -1  # -1 = auto -> 4 slots, kv_unified
    kv_unified: bool | None = None  # None = not given
    flash_attn: str = "auto"
    cache_type_k: str = "f16"
    cache_type_v: str = "f16"
    n_batch: int = 2048
    n_ubatch: int = 512
    threads: int = -1
    threads_batch: int = -1
    n_gpu_layers: int = -1  # auto
    hosts: list[str] = field(default_factory=lambda: ["127.0.0.1"])
    port: int = 8080
    metrics: bool = False
    props: bool = False
    slots: bool = True
    cache_prompt: bool = True
    cache_reuse: int = 0
    cache_ram_mib: int = 8192
    ctx_shift: bool = False
    cont_batching: bool = True
    warmup: bool = True
    aliases: list[str] = field(default_factory=list)
    fit: bool = False  # binary default is on; off here for reproducible trials
    verbosity: int = 3
    timeout: int = 3600
    threads_http: int = -1
    api_keys: list[str] = field(default_factory=list)
    load_mode: str = "auto"
    offline: bool = False


KV_CACHE_TYPES = ["f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1"]
LOAD_MODES = ["auto", "none", "mmap", "mlock", "mmap+mlock", "dio"]


class ArgError(Exception):
    pass


def is_truthy(v: str) -> bool:
    return v in ("on", "enabled", "true", "1")


def is_falsey(v: str) -> bool:
    return v in ("off", "disabled", "false", "0")


def is_autoy(v: str) -> bool:
    return v in ("auto", "-1")


def parse_bool_value(v: str) -> bool:
    if is_truthy(v):
        return True
    if is_falsey(v):
        return False
    raise ArgError(f"invalid boolean value: '{v}'")


_INT_RE = re.compile(r"\s*([+-]?\d+)")


def stoi(v: str) -> int:
    """std::stoi: leading spaces and sign, digits, trailing text ignored."""
    m = _INT_RE.match(v)
    if not m:
        raise ArgError(f"stoi: '{v}' is not an integer")
    n = int(m.group(1))
    if not -(2**31) <= n < 2**31:
        raise ArgError(f"stoi: '{v}' is out of range")
    return n


# ----------------------------------------------------------------------------
# option table


@dataclass
class Opt:
    args: list[str]
    kind: str  # "void" (switch), "bool" (with negative forms), "int", "str"
    apply: Callable
    help: str
    value: str = ""
    neg: list[str] = field(default_factory=list)
    env: str | None = None

    def usage(self) -> str:
        names = ", ".join(self.args + self.neg)
        head = f"{names} {self.value}".rstrip()
        env = f"\n{'':36}(env: {self.env})" if self.env else ""
        return f"{head:<35} {self.help}{env}"


def _set(attr: str):
    def f(s: Settings, v):
        setattr(s, attr, v)
    return f


def _positive(attr: str, what: str):
    def f(s: Settings, v: int):
        if v < 1:
            raise ArgError(f"error: invalid value for {what}: {v} (must be >= 1)")
        setattr(s, attr, v)
    return f


def _np(s: Settings, v: int):
    if v == 0:
        raise ArgError("error: invalid value for n_parallel: 0")
    s.n_parallel = v


def _ctx(s: Settings, v: int):
    if v < 0:
        raise ArgError(f"error: invalid value for ctx-size: {v}")
    s.n_ctx = v


def _threads(attr: str):
    def f(s: Settings, v: int):
        setattr(s, attr, v if v > 0 else (os.cpu_count() or 1))
    return f


def _fa(s: Settings, v: str):
    if is_truthy(v):
        s.flash_attn = "on"
    elif is_falsey(v):
        s.flash_attn = "off"
    elif is_autoy(v):
        s.flash_attn = "auto"
    else:
        raise ArgError(f"error: unknown value for --flash-attn: '{v}'")


def _cache_type(attr: str):
    def f(s: Settings, v: str):
        if v not in KV_CACHE_TYPES:
            raise ArgError(f"Unsupported cache type: {v} (allowed: {', '.join(KV_CACHE_TYPES)})")
        setattr(s, attr, v)
    return f


def _fit(s: Settings, v: str):
    if is_truthy(v):
        s.fit = True
    elif is_falsey(v):
        s.fit = False
    else:
        raise ArgError(f"error: unkown value for --fit: '{v}'")


def _ngl(s: Settings, v: str):
    if v == "auto":
        s.n_gpu_layers = -1
    elif v == "all":
        s.n_gpu_layers = 999
    else:
        s.n_gpu_layers = stoi(v)


def _hosts(s: Settings, v: str):
    hosts = [h.strip() for h in v.split(",") if h.strip()]
    if not hosts:
        raise ArgError("error: empty host")
    s.hosts = hosts


def _port(s: Settings, v: int):
    if not 0 <= v <= 65535:
        raise ArgError(f"error: invalid port: {v}")
    s.port = v


def _alias(s: Settings, v: str):
    for a in v.split(","):
        a = a.strip()
        if a and a not in s.aliases:
            s.aliases.append(a)


def _api_key(s: Settings, v: str):
    s.api_keys.extend(k for k in v.split(",") if k)


def _load_mode(s: Settings, v: str):
    if v not in LOAD_MODES:
        raise ArgError(f"error: unknown value for --load-mode: '{v}'")
    s.load_mode = v


def _no_mmap(s: Settings):
    s.load_mode = "none"


def _mlock(s: Settings):
    s.load_mode = "mmap+mlock"


def _timeout(s: Settings, v: int):
    if v < 1:
        raise ArgError(f"error: invalid value for timeout: {v}")
    s.timeout = v


class _Exit(Exception):
    def __init__(self, code: int):
        self.code = code


def _version(s: Settings):
    from importlib.metadata import PackageNotFoundError, version

    try:
        ver = version("xllamacpp")
    except PackageNotFoundError:
        ver = "unknown"
    # llama-server prints its version to stderr, then exits 0.
    print(f"version: {ver} (xllamacpp)", file=sys.stderr)
    print("built with xllamacpp (llama.cpp server in-process) for " + sys.platform, file=sys.stderr)
    raise _Exit(0)


def _help(s: Settings):
    try:
        print("usage: llama-server [options]   (llama.cpp engine from PyPI xllamacpp)\n")
        for o in OPTIONS:
            print(o.usage())
        sys.stdout.flush()
    except BrokenPipeError:  # e.g. `llama-server -h | head`
        pass
    raise _Exit(0)


OPTIONS: list[Opt] = [
    Opt(["-h", "--help", "--usage"], "void", _help, "print usage and exit"),
    Opt(["--version"], "void", _version, "show version and build info"),
    Opt(["-m", "--model"], "str", _set("model"), "model path (GGUF)", "FNAME", env="LLAMA_ARG_MODEL"),
    Opt(["-a", "--alias"], "str", _alias, "model name aliases, comma-separated (used by the API)", "STRING",
        env="LLAMA_ARG_ALIAS"),
    Opt(["-c", "--ctx-size"], "int", _ctx, "total KV context (default: 0 = from model)", "N",
        env="LLAMA_ARG_CTX_SIZE"),
    Opt(["-np", "--parallel"], "int", _np, "number of server slots (default: -1 = auto)", "N",
        env="LLAMA_ARG_N_PARALLEL"),
    Opt(["-kvu", "--kv-unified"], "bool", _set("kv_unified"), "single unified KV buffer for all sequences",
        neg=["-no-kvu", "--no-kv-unified"], env="LLAMA_ARG_KV_UNIFIED"),
    Opt(["-fa", "--flash-attn"], "str", _fa, "flash attention: on, off or auto (default: auto)", "[on|off|auto]",
        env="LLAMA_ARG_FLASH_ATTN"),
    Opt(["-ctk", "--cache-type-k"], "str", _cache_type("cache_type_k"), "KV cache type for K (default: f16)",
        "TYPE", env="LLAMA_ARG_CACHE_TYPE_K"),
    Opt(["-ctv", "--cache-type-v"], "str", _cache_type("cache_type_v"), "KV cache type for V (default: f16)",
        "TYPE", env="LLAMA_ARG_CACHE_TYPE_V"),
    Opt(["-b", "--batch-size"], "int", _positive("n_batch", "batch-size"), "logical max batch size (default: 2048)",
        "N", env="LLAMA_ARG_BATCH"),
    Opt(["-ub", "--ubatch-size"], "int", _positive("n_ubatch", "ubatch-size"),
        "physical max batch size (default: 512)", "N", env="LLAMA_ARG_UBATCH"),
    Opt(["-t", "--threads"], "int", _threads("threads"), "threads for generation (default: -1 = auto)", "N",
        env="LLAMA_ARG_THREADS"),
    Opt(["-tb", "--threads-batch"], "int", _threads("threads_batch"),
        "threads for batch and prompt processing (default: same as --threads)", "N"),
    Opt(["-ngl", "--gpu-layers", "--n-gpu-layers"], "str", _ngl, "layers in VRAM (CPU engine: no effect)",
        "N", env="LLAMA_ARG_N_GPU_LAYERS"),
    Opt(["-fit", "--fit"], "str", _fit, "adjust unset arguments to fit in device memory (default here: off)",
        "[on|off]", env="LLAMA_ARG_FIT"),
    Opt(["-cb", "--cont-batching"], "bool", _set("cont_batching"), "continuous batching (default: enabled)",
        neg=["-nocb", "--no-cont-batching"], env="LLAMA_ARG_CONT_BATCHING"),
    Opt(["--cache-prompt"], "bool", _set("cache_prompt"), "reuse a slot's KV across requests (default: enabled)",
        neg=["--no-cache-prompt"], env="LLAMA_ARG_CACHE_PROMPT"),
    Opt(["--cache-reuse"], "int", _set("cache_reuse"), "min chunk size to reuse via KV shifting (default: 0)",
        "N", env="LLAMA_ARG_CACHE_REUSE"),
    Opt(["-cram", "--cache-ram"], "int", _set("cache_ram_mib"), "host-RAM prompt cache MiB (default: 8192)",
        "N", env="LLAMA_ARG_CACHE_RAM"),
    Opt(["--context-shift"], "bool", _set("ctx_shift"), "context shift on overflow (default: disabled)",
        neg=["--no-context-shift"], env="LLAMA_ARG_CONTEXT_SHIFT"),
    Opt(["--warmup"], "bool", _set("warmup"), "warm-up run at start (default: enabled)", neg=["--no-warmup"]),
    Opt(["-lm", "--load-mode"], "str", _load_mode, "model load mode: " + "|".join(LOAD_MODES), "MODE",
        env="LLAMA_ARG_LOAD_MODE"),
    Opt(["--no-mmap"], "void", _no_mmap, "same as --load-mode none", env="LLAMA_ARG_NO_MMAP"),
    Opt(["--mlock"], "void", _mlock, "same as --load-mode mmap+mlock", env="LLAMA_ARG_MLOCK"),
    Opt(["--host"], "str", _hosts, "listen address(es), comma-separated (default: 127.0.0.1)", "HOST",
        env="LLAMA_ARG_HOST"),
    Opt(["--port"], "int", _port, "listen port (default: 8080; 0 = pick a free port)", "PORT",
        env="LLAMA_ARG_PORT"),
    Opt(["--metrics"], "void", lambda s: setattr(s, "metrics", True), "enable /metrics (default: disabled)",
        env="LLAMA_ARG_ENDPOINT_METRICS"),
    Opt(["--props"], "void", lambda s: setattr(s, "props", True), "enable POST /props (default: disabled)",
        env="LLAMA_ARG_ENDPOINT_PROPS"),
    Opt(["--slots"], "bool", _set("slots"), "enable /slots (default: enabled)", neg=["--no-slots"],
        env="LLAMA_ARG_ENDPOINT_SLOTS"),
    Opt(["-to", "--timeout"], "int", _timeout, "HTTP read/write timeout in s (default: 3600)", "N",
        env="LLAMA_ARG_TIMEOUT"),
    Opt(["--threads-http"], "int", _set("threads_http"), "HTTP worker threads (default: -1)", "N",
        env="LLAMA_ARG_THREADS_HTTP"),
    Opt(["--api-key"], "str", _api_key, "API key(s), comma-separated (default: none)", "KEY", env="LLAMA_API_KEY"),
    Opt(["--offline"], "void", lambda s: setattr(s, "offline", True), "no network access (always true here)",
        env="LLAMA_ARG_OFFLINE"),
    Opt(["-lv", "--verbosity", "--log-verbosity"], "int", _set("verbosity"),
        "log verbosity (default: 3; 4 adds buffer sizes and model info)", "N", env="LLAMA_LOG_VERBOSITY"),
    Opt(["-v", "--verbose", "--log-verbose"], "void", lambda s: setattr(s, "verbosity", 100),
        "log everything"),
]


def parse(argv: list[str], environ: dict[str, str]) -> Settings:
    s = Settings()
    table: dict[str, tuple[Opt, bool]] = {}
    for o in OPTIONS:
        for a in o.args:
            table[a] = (o, True)
        for a in o.neg:
            table[a] = (o, False)

    # environment first; command-line flags override it afterwards
    for o in OPTIONS:
        if not o.env or o.env not in environ:
            continue
        value = environ[o.env]
        try:
            if o.kind == "void":
                if is_truthy(value):
                    o.apply(s)
            elif o.kind == "bool":
                o.apply(s, parse_bool_value(value))
            elif o.kind == "int":
                o.apply(s, stoi(value))
            else:
                o.apply(s, value)
        except ArgError as e:
            raise ArgError(f'error while handling environment variable "{o.env}": {e}\n') from None

    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--"):
            arg = arg.replace("_", "-")
        if arg not in table:
            raise ArgError(f"error: invalid argument: {arg}")
        o, positive = table[arg]
        if o.env and o.env in environ:
            print(f"warn: {o.env} environment variable is set, but will be overwritten by command line "
                  f"argument {arg}", file=sys.stderr)
        try:
            if o.kind == "void":
                o.apply(s)
            elif o.kind == "bool":
                o.apply(s, positive)
            else:
                if i + 1 >= len(argv):
                    raise ArgError("expected value for argument")
                i += 1
                value = argv[i]
                o.apply(s, stoi(value) if o.kind == "int" else value)
        except ArgError as e:
            raise ArgError(f'error while handling argument "{arg}": {e}\n\nusage:\n{o.usage()}\n\n'
                           "to show complete usage, run with -h") from None
        i += 1

    if not s.model:
        raise ArgError("error: --model is required (llama-server's router mode is not supported here)")
    return s


# ----------------------------------------------------------------------------
# engine


def log(msg: str) -> None:
    try:
        print(msg, file=sys.stderr, flush=True)
    except (BrokenPipeError, OSError):  # nobody reads stderr any more; keep serving
        pass


def build_params(s: Settings):
    import xllamacpp as xl

    p = xl.CommonParams()
    p.model.path = s.model
    p.n_ctx = s.n_ctx
    p.n_parallel = s.n_parallel
    p.kv_unified = bool(s.kv_unified)
    p.flash_attn_type = {
        "on": xl.llama_flash_attn_type.LLAMA_FLASH_ATTN_TYPE_ENABLED,
        "off": xl.llama_flash_attn_type.LLAMA_FLASH_ATTN_TYPE_DISABLED,
        "auto": xl.llama_flash_attn_type.LLAMA_FLASH_ATTN_TYPE_AUTO,
    }[s.flash_attn]
    p.cache_type_k = getattr(xl.ggml_type, "GGML_TYPE_" + s.cache_type_k.upper())
    p.cache_type_v = getattr(xl.ggml_type, "GGML_TYPE_" + s.cache_type_v.upper())
    p.n_batch = s.n_batch
    p.n_ubatch = s.n_ubatch
    cpu = p.cpuparams
    cpu.n_threads = s.threads
    p.cpuparams = cpu
    cpub = p.cpuparams_batch
    cpub.n_threads = s.threads_batch if s.threads_batch > 0 else s.threads
    p.cpuparams_batch = cpub
    p.n_gpu_layers = s.n_gpu_layers
    p.hostnames = list(s.hosts)
    p.port = s.port
    p.endpoint_metrics = s.metrics
    p.endpoint_props = s.props
    p.endpoint_slots = s.slots
    p.cache_prompt = s.cache_prompt
    p.n_cache_reuse = s.cache_reuse
    p.cache_ram_mib = s.cache_ram_mib
    p.ctx_shift = s.ctx_shift
    p.cont_batching = s.cont_batching
    p.warmup = s.warmup
    if s.aliases:
        p.model_alias = set(s.aliases)
    p.fit_params = s.fit
    p.verbosity = s.verbosity
    p.timeout_read = s.timeout
    p.timeout_write = s.timeout
    p.n_threads_http = s.threads_http
    if s.api_keys:
        p.api_keys = list(s.api_keys)
    p.load_mode = {
        "auto": xl.llama_load_mode.LLAMA_LOAD_MODE_AUTO,
        "none": xl.llama_load_mode.LLAMA_LOAD_MODE_NONE,
        "mmap": xl.llama_load_mode.LLAMA_LOAD_MODE_MMAP,
        "mlock": xl.llama_load_mode.LLAMA_LOAD_MODE_MLOCK,
        "mmap+mlock": xl.llama_load_mode.LLAMA_LOAD_MODE_MMAP_MLOCK,
        "dio": xl.llama_load_mode.LLAMA_LOAD_MODE_DIRECT_IO,
    }[s.load_mode]
    p.offline = True  # there is no network here; never try to download anything
    return xl, p


def port_in_use(hosts: list[str], port: int) -> bool:
    """True if some host:port cannot be bound now (someone else listens there)."""
    if port == 0:
        return False
    for host in hosts:
        if host.endswith(".sock"):
            continue
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        except OSError:
            return True
        for family, socktype, proto, _, addr in infos[:1]:
            with socket.socket(family, socktype, proto) as sk:
                sk.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sk.bind(addr)
                except OSError:
                    return True
    return False


class _Stop(Exception):
    pass


# Keeps the engine alive until os._exit(); see the comment at the end of main().
_ENGINE: list = []


def main(argv: list[str]) -> int:
    # A stop signal before the engine is up is remembered and honored once Server() returns
    # (the constructor holds the GIL, so Python handlers cannot run during model loading).
    state = {"serving": False, "stop": False}

    def on_signal(signum, frame):
        state["stop"] = True
        if state["serving"]:
            raise _Stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    try:
        s = parse(argv, dict(os.environ))
    except _Exit as e:
        return e.code
    except ArgError as e:
        log(str(e))
        return 1

    if s.n_parallel < 0:
        log("main: n_parallel is set to auto, using n_parallel = 4 and kv_unified = true")
        s.n_parallel = 4
        s.kv_unified = True

    xl, params = build_params(s)
    t0 = time.monotonic()
    try:
        server = xl.Server(params)
        _ENGINE.append(server)
    except Exception as e:  # the engine has already logged the cause to stderr
        log(f"main: engine failed to start: {e}")
        if port_in_use(s.hosts, s.port):
            log("main: exiting due to HTTP server error")
        else:
            log("main: exiting due to model loading error")
        return 1

    address = server.listening_address
    log(f"main: engine started in {time.monotonic() - t0:.2f} s")
    log(f"main: server is listening on {address}")

    try:
        state["serving"] = True
        while not state["stop"]:
            time.sleep(3600)
    except _Stop:
        pass
    state["serving"] = False

    # Exit without destroying the Server object: its destructor holds the GIL and, while a
    # stream is in flight, waits for the next SSE ping (up to 30 s) before it returns.
    # Ending the process closes every connection at once, like the binary's exit does.
    log("main: received a stop signal, exiting")
    return 0


if __name__ == "__main__":
    code = main(sys.argv[1:])
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (BrokenPipeError, OSError):
            pass
    # Skip interpreter teardown (the engine's globals can make it slow); everything is flushed.
    os._exit(code)
