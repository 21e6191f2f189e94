"""``contextmri serve``: a long-running ISMRMRD stream server that keeps the model warm.

Speaks the Gadgetron/ISMRMRD v1 stream protocol: Gadgetron's ``<connect>`` external gadget,
``gadgetron_ismrmrd_client``-style and FIRE-style (python-ismrmrd-server) clients. It binds
127.0.0.1 unless told otherwise, reconstructs one connection at a time with a bounded queue
of waiting connections (a full queue answers "server busy"), and shuts down cleanly on SIGTERM.
See ``contextmri_core.service.server`` for the protocol and the failure handling.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import time
from pathlib import Path

HELP = "serve reconstructions over the ISMRMRD/Gadgetron stream protocol (model kept warm)"
log = logging.getLogger("contextmri.serve")
_T0 = time.perf_counter()


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("serve", help=HELP, description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1; 0.0.0.0 exposes it to the network)")
    p.add_argument("--port", type=int, default=9002, help="TCP port (0 picks a free one)")
    p.add_argument("--queue", type=int, default=4, help="connections that may wait (default 4)")
    p.add_argument("--idle-timeout", type=float, default=30.0,
                   help="seconds a silent peer may keep a session (default 30)")
    p.add_argument("--max-frame-mb", type=int, default=512, help="largest frame accepted (MiB)")
    p.add_argument("--model", default=None,
                   help="model folder: a contextmri checkpoint, the published ContextMRI "
                        "MRI_checkpoint/ or one UNet folder of it (default: shipped)")
    p.add_argument("--unet", default=None,
                   help="published checkpoint: fastmri or skm-tea (default: from each scan)")
    p.add_argument("--preset", default="auto",
                   help="sampler settings: auto (paper for published checkpoints), paper, "
                        "contextmri")
    p.add_argument("--method", default="dds", help="dds, dps, sense or zero_filled")
    p.add_argument("--steps", type=int, default=None,
                   help="DDS steps (default: the preset's; ours 25, paper 100)")
    p.add_argument("--guidance", type=float, default=None, help="CFG scale (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--pacs", default=None, metavar="HOST:PORT:AET",
                   help="also send every session's images as DICOM to this PACS (C-STORE)")
    p.add_argument("--calling-aet", default="CONTEXTMRI", help="our AE title for --pacs")
    p.add_argument("--outbox", default=None,
                   help="DICOM outbox for --pacs (default ~/.local/state/contextmri/outbox); "
                        "what the PACS does not take stays there for `contextmri push`")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="any further StreamSettings field (e.g. --set phase=true)")
    p.add_argument("--ready-file", type=Path, default=None,
                   help="write {host, port, startup_s} as JSON here once serving")
    p.set_defaults(func=run)
    return p


def _config(args):
    from contextmri_core.service.server import ServerConfig
    from contextmri_core.errors import ConfigError
    from contextmri_core.io.mrd.stream import Limits
    from contextmri_core.recon.stream import StreamSettings

    props = {"model": args.model, "unet": args.unet, "preset": args.preset,
             "method": args.method, "steps": args.steps,
             "guidance": args.guidance, "seed": args.seed, "batch_size": args.batch_size,
             "device": args.device, "pacs": args.pacs, "calling_aet": args.calling_aet,
             "outbox": args.outbox}
    for item in args.set:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: use NAME=VALUE")
        name, value = item.split("=", 1)
        props[name] = value
    if args.queue < 1 or args.idle_timeout <= 0:
        raise ConfigError("--queue must be >= 1 and --idle-timeout > 0")
    return ServerConfig(host=args.host, port=args.port, queue_size=args.queue,
                        idle_timeout_s=args.idle_timeout,
                        limits=Limits(max_frame_bytes=args.max_frame_mb << 20),
                        settings=StreamSettings.from_properties(props))


def run(args) -> int:
    from contextmri_core.service.server import StreamServer

    server = StreamServer(_config(args))
    load_s = server.warm_up()  # before binding: a bad model fails fast, with no socket open
    host, port = server.bind()
    startup_s = time.perf_counter() - _T0
    log.warning("serving on %s:%d (start-up %.2f s, model load %.2f s)", host, port,
                startup_s, load_s)
    if args.ready_file:
        args.ready_file.write_text(json.dumps({"host": host, "port": port,
                                               "startup_s": startup_s, "model_load_s": load_s}))
    signal.signal(signal.SIGTERM, server.stop)
    signal.signal(signal.SIGINT, server.stop)
    server.serve_forever()
    return 0
