"""``contextmri serve``: a long-running ISMRMRD stream server that keeps the model warm.

Speaks the Gadgetron/ISMRMRD v1 stream protocol: Gadgetron's ``<connect>`` external gadget,
``gadgetron_ismrmrd_client``-style and FIRE-style (python-ismrmrd-server) clients. It binds
127.0.0.1 unless told otherwise, reconstructs one connection at a time with a bounded queue
of waiting connections (a full queue answers "server busy").

The model, device, PACS, AE title and outbox come only from these flags: a client's config
may choose reconstruction parameters (method, steps, guidance, ensemble, batch size, seed,
...) within the --max-* bounds, and anything else it asks for is answered with an ERROR
naming the property. Every message must arrive within --message-timeout seconds and every
session end within --session-timeout (past it the diffusion sampler stops and the classical
fallback finishes the images). SIGTERM refuses new connections at once, stops a running
reconstruction within seconds (ERROR + fallback images) and exits.
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
    p.add_argument("--message-timeout", type=float, default=60.0,
                   help="seconds within which each message must arrive whole (default 60)")
    p.add_argument("--session-timeout", type=float, default=1800.0,
                   help="wall-time limit of a session, reading and reconstruction (default "
                        "1800 s; past it the fallback finishes the images)")
    p.add_argument("--max-frame-mb", type=int, default=512, help="largest frame accepted (MiB)")
    p.add_argument("--model", default=None,
                   help="model folder: a contextmri checkpoint, the published ContextMRI "
                        "MRI_checkpoint/ or one UNet folder of it (default: shipped)")
    p.add_argument("--unet", default=None,
                   help="published checkpoint: fastmri or skm-tea (default: from each scan)")
    p.add_argument("--preset", default="auto",
                   help="sampler settings: auto (paper for published checkpoints), paper, "
                        "contextmri")
    p.add_argument("--max-matrix", type=int, default=4096,
                   help="largest k-space grid axis a header may ask for (default 4096)")
    p.add_argument("--max-scan-gib", type=float, default=8.0,
                   help="largest k-space grid of one scan in GiB (default 8)")
    p.add_argument("--max-steps", type=int, default=None,
                   help="most diffusion steps a client may ask for (default max(100, --steps))")
    p.add_argument("--max-ensemble", type=int, default=4, help="largest ensemble a client "
                                                               "may ask for (default 4)")
    p.add_argument("--max-batch-size", type=int, default=16,
                   help="largest batch size a client may ask for (default 16)")
    p.add_argument("--max-guidance", type=float, default=10.0,
                   help="largest CFG scale a client may ask for (default 10)")
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
    from contextmri_core.data.grid_limits import GridLimits
    from contextmri_core.errors import ConfigError
    from contextmri_core.io.mrd.stream import Limits
    from contextmri_core.service.client_policy import ClientPolicy
    from contextmri_core.service.server import ServerConfig
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
    if not args.message_timeout > 0 or not args.session_timeout > 0:
        raise ConfigError("--message-timeout and --session-timeout must be > 0 seconds")
    policy = ClientPolicy(max_steps=args.max_steps or max(100, args.steps or 0),
                          max_ensemble=args.max_ensemble, max_batch_size=args.max_batch_size,
                          max_guidance=args.max_guidance,
                          max_time_budget_s=args.session_timeout)
    grid = GridLimits(max_matrix=args.max_matrix,
                      max_grid_bytes=int(args.max_scan_gib * (1 << 30)))
    return ServerConfig(host=args.host, port=args.port, queue_size=args.queue,
                        idle_timeout_s=args.idle_timeout,
                        message_timeout_s=args.message_timeout,
                        session_timeout_s=args.session_timeout,
                        limits=Limits(max_frame_bytes=args.max_frame_mb << 20),
                        grid_limits=grid, policy=policy,
                        settings=StreamSettings.from_properties(props))


def _check_outbox(settings) -> None:
    """With --pacs: the PACS spec parses and the outbox is usable, before the model loads."""
    if not settings.pacs:
        return
    from contextmri_core.service.series import default_outbox
    from contextmri_core.io.dicom.pacs import PacsTarget
    from contextmri_core.io.publish import probe_writable

    PacsTarget.parse(settings.pacs, calling_aet=settings.calling_aet)
    probe_writable(Path(settings.outbox) if settings.outbox else default_outbox(), "outbox")


def run(args) -> int:
    from contextmri_core.service.server import StreamServer

    config = _config(args)
    _check_outbox(config.settings)
    server = StreamServer(config)
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
