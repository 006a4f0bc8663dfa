"""`segue serve`: a local web page to try a model by ear (segue.serve; docs/serve.md).

    segue serve [--model DIR] [--host 127.0.0.1] [--port 7860] [--device auto] [--threads N]

Loads the model once, then serves http://HOST:PORT/ until Ctrl-C. Needs the `serve` extra
(`pip install -e '.[serve]'`; scripts/setup.sh installs it).
"""

from __future__ import annotations

import argparse
import sys

from segue.commands import (
    CommandError,
    add_device,
    add_model,
    add_threads,
    positive_float,
    positive_int,
)


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0 to 65535, got {value}")
    return value


def exposure_warning(host: str) -> str | None:
    """The warning printed when --host is not a loopback address, else None."""
    from segue.serve.app import is_loopback

    if is_loopback(host):
        return None
    return (
        f"segue serve: warning: listening on {host}, not a loopback address: anyone who can "
        "reach this machine can use the page and the model (there is no login). The microphone "
        "works only on a page opened as localhost or over https."
    )


def _check_port_free(host: str, port: int) -> None:
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host.strip("[]"), port))
        except OSError as error:
            raise CommandError(
                f"cannot listen on {host}:{port} ({error.strerror or error}): pass another "
                "--port, or stop what uses it"
            ) from None


def _serve(args: argparse.Namespace) -> None:
    try:
        import uvicorn

        from segue.serve.app import LOOPBACK_NAMES, create_app, is_loopback
        from segue.serve.engine import Engine, Limits, bundled_examples
    except ImportError as error:
        raise CommandError(
            f"segue serve needs the serve extra ({error.name or error} is missing): "
            "pip install -e '.[serve]' -c requirements/constraints.txt"
        ) from None
    import logging

    from segue.commands.generate import DEFAULT_MODEL, _model

    warning = exposure_warning(args.host)
    if warning:
        print(warning, file=sys.stderr)
    if args.port:
        _check_port_free(args.host, args.port)
    limits = Limits(
        max_seconds=args.max_seconds,
        max_upload_bytes=round(args.max_upload_mb * 2**20),
        max_waiting=args.queue,
    )
    model = _model(args)
    engine = Engine(model, limits, examples=bundled_examples())
    hosts = LOOPBACK_NAMES if is_loopback(args.host) else None
    app = create_app(engine, allowed_hosts=hosts)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("segue serve: %(message)s"))
    logger = logging.getLogger("segue.serve")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if args.debug else logging.INFO)
    logger.propagate = False
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(
        f"segue serve: {model.info.get('name') or args.model or DEFAULT_MODEL} (prompts up to "
        f"{model.max_prompt_seconds:.2f} s{', SoundStorm' if model.soundstorm else ''}) on "
        f"http://{shown}:{args.port}/ (Ctrl-C stops it)",
        flush=True,
    )
    config = uvicorn.Config(
        app,
        host=args.host.strip("[]"),
        port=args.port,
        log_level="debug" if args.debug else "info",
        access_log=args.access_log,
        lifespan="on",  # closes the engine (its worker, its temporary folder) at shutdown
        timeout_graceful_shutdown=5,
    )
    try:
        uvicorn.Server(config).run()
    finally:
        engine.close()


def register(sub: argparse._SubParsersAction) -> None:
    """Add `segue serve`."""
    p = sub.add_parser(
        "serve",
        help="a local web page: continue a recorded or uploaded prompt, generate, resynthesize",
        description="Serve a page to try a model by ear: record or upload a prompt and hear its "
        "continuation, generate from nothing, resynthesize in another voice (docs/serve.md).",
    )
    from segue.commands.generate import BUNDLE_HELP

    add_model(p, BUNDLE_HELP, required=False, old_flag=None)
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only; a warning otherwise)",
    )
    p.add_argument("--port", type=_port, default=7860, help="port (default 7860; 0: any free)")
    add_device(p)
    add_threads(p)
    p.add_argument(
        "--max-seconds",
        type=positive_float,
        default=30.0,
        help="longest audio one request generates or resynthesizes (default 30)",
    )
    p.add_argument(
        "--max-upload-mb", type=positive_float, default=20.0, help="largest upload (default 20)"
    )
    p.add_argument(
        "--queue", type=positive_int, default=8, help="generations that may wait (default 8)"
    )
    p.add_argument("--access-log", action="store_true", help="log every HTTP request")
    p.add_argument("--debug", action="store_true", help="log tracebacks of failed jobs")
    p.set_defaults(func=_serve)
