"""Static checks of docker/ without a Docker engine.

The Dockerfile is read by a small parser (continuations, comments, JSON/shell forms, ARG/ENV
substitution with ARG scoping around FROM); its COPYs are replayed into a scratch root; the
package copied there is built into a wheel; the pipeline XMLs that land in Gadgetron's config
directory go through the pipelines test; compose.yaml is checked for the image, the ports
(host side 127.0.0.1 only), the Orthanc pin and the serve command (parsed by the real
``contextmri serve`` parser). Every checker returns a list of problems, and each one is also
run on a deliberately broken copy to show that it can fail.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shlex
import shutil
import socket
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest
import yaml

from tests.gadgets.test_pipelines import (
    test_pipeline_parses_and_names_importable_targets as check_pipeline,
)

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
DOCKERFILE = DOCKER / "Dockerfile"
DOCKERIGNORE = DOCKER / "Dockerfile.dockerignore"
COMPOSE = DOCKER / "compose.yaml"
COMPOSE_GPU = DOCKER / "compose.gpu.yaml"

GADGETRON_RUNTIME_REPO = "ghcr.io/gadgetron/gadgetron/ubuntu22.04_rt_cuda"
GADGETRON_PORT = 9002
TORCH_VERSION = "2.13.0"
ORTHANC_REPOS = ("orthancteam/orthanc", "jodogne/orthanc")
ORTHANC_DICOM_PORT = 4242
LOOPBACK = ("127.0.0.1", "::1", "[::1]")


# ---------------------------------------------------------------------------------------------
# Dockerfile parser
# ---------------------------------------------------------------------------------------------

@dataclass
class Instruction:
    cmd: str                 # upper-case keyword
    args: str                # raw text after the keyword, continuations joined
    line: int                # 1-based line of the keyword
    stage: int               # index of the FROM it belongs to (-1: before the first FROM)
    expanded: str = ""       # args after ARG/ENV substitution (for the instructions that get it)
    env: Dict[str, str] = field(default_factory=dict)  # ARG+ENV scope in force here

    def exec_form(self) -> Optional[List[str]]:
        text = self.args.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                return None
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                return value
        return None


_EXPANDED = {"ADD", "COPY", "ENV", "EXPOSE", "FROM", "LABEL", "STOPSIGNAL", "USER", "VOLUME",
             "WORKDIR", "ARG"}
_VAR = re.compile(r"\$(?:\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::(?P<op>[-+])(?P<word>[^}]*))?\}"
                  r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))")


def substitute(text: str, scope: Dict[str, str]) -> str:
    """Dockerfile variable substitution: $X, ${X}, ${X:-default}, ${X:+alt}; unset -> ""."""
    def repl(m: re.Match) -> str:
        name = m.group("name") or m.group("bare")
        value = scope.get(name)
        op = m.group("op")
        if op == "-":
            return value if value else substitute(m.group("word"), scope)
        if op == "+":
            return substitute(m.group("word"), scope) if value else ""
        return value or ""
    return _VAR.sub(repl, text)


def _logical_lines(text: str) -> List[Tuple[int, str]]:
    escape = "\\"
    lines = text.splitlines()
    # parser directives (only before anything else)
    for raw in lines:
        m = re.match(r"#\s*escape\s*=\s*(\S)\s*$", raw.strip())
        if m:
            escape = m.group(1)
            continue
        if re.match(r"#\s*\w+\s*=", raw.strip()):
            continue
        break
    out: List[Tuple[int, str]] = []
    buf: List[str] = []
    start = 0
    for number, raw in enumerate(lines, 1):
        stripped = raw.strip()
        if buf and (not stripped or stripped.startswith("#")):
            continue  # comment or empty line inside a continuation: dropped, as Docker does
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if not buf:
            start = number
        body = raw.rstrip()
        if body.endswith(escape):
            buf.append(body[:-1])
            continue
        buf.append(body)
        out.append((start, " ".join(part.strip() for part in buf)))
        buf = []
    if buf:
        out.append((start, " ".join(part.strip() for part in buf)))
    return out


def _env_pairs(args: str) -> List[Tuple[str, str]]:
    tokens = shlex.split(args, posix=True)
    if tokens and "=" not in tokens[0]:          # legacy `ENV KEY value with spaces`
        return [(tokens[0], " ".join(tokens[1:]))]
    return [tuple(t.split("=", 1)) for t in tokens]  # type: ignore[misc]


def parse_dockerfile(text: str, build_args: Optional[Dict[str, str]] = None) -> List[Instruction]:
    build_args = dict(build_args or {})
    global_args: Dict[str, str] = {}
    scope: Dict[str, str] = {}
    stage = -1
    out: List[Instruction] = []
    for line, logical in _logical_lines(text):
        keyword, _, args = logical.partition(" ")
        cmd = keyword.upper()
        args = args.strip()
        if cmd == "FROM":
            stage += 1
            expanded = substitute(args, global_args)
            scope = {}
        else:
            expanded = substitute(args, scope) if cmd in _EXPANDED else args
        if cmd == "ARG":
            for token in shlex.split(args):
                name, has_default, default = token.partition("=")
                if name in build_args:
                    value = build_args[name]
                elif has_default:
                    value = substitute(default, global_args if stage < 0 else scope)
                else:
                    value = global_args.get(name, "") if stage >= 0 else ""
                (global_args if stage < 0 else scope)[name] = value
        if cmd == "ENV":
            pairs = [(k, substitute(v, scope)) for k, v in _env_pairs(args)]
            scope.update(pairs)
        out.append(Instruction(cmd, args, line, stage, expanded, dict(scope)))
    return out


def final_stage(instrs: List[Instruction]) -> List[Instruction]:
    last = max(i.stage for i in instrs)
    return [i for i in instrs if i.stage == last]


def split_flags(expanded: str) -> Tuple[Dict[str, str], List[str]]:
    """`--from=x --chown=a:b src... dest` -> ({from: x, chown: a:b}, [src..., dest])."""
    flags = {}
    rest = expanded.strip()
    while rest.startswith("--"):
        flag, _, rest = rest.partition(" ")
        name, _, value = flag[2:].partition("=")
        flags[name] = value
        rest = rest.strip()
    return flags, json.loads(rest) if rest.startswith("[") else rest.split()


# ---------------------------------------------------------------------------------------------
# .dockerignore (moby/patternmatcher semantics: last matching pattern wins, a pattern that
# matches a parent directory matches everything below it, ! re-includes)
# ---------------------------------------------------------------------------------------------

def _ignore_regex(pattern: str) -> re.Pattern:
    pattern = os.path.normpath(pattern.strip().lstrip("/")).replace(os.sep, "/")
    rx, i = "", 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):
                i += 1
                rx += "(?:.*/)?"
            else:
                rx += ".*"
            continue
        rx += {"*": "[^/]*", "?": "[^/]"}.get(c, re.escape(c))
        i += 1
    return re.compile(f"^{rx}$")


def read_ignore(text: str) -> List[Tuple[bool, re.Pattern]]:
    rules = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        rules.append((negate, _ignore_regex(line[1:] if negate else line)))
    return rules


def is_ignored(rel: str, rules: List[Tuple[bool, re.Pattern]]) -> bool:
    parts = rel.split("/")
    candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    ignored = False
    for negate, rx in rules:
        if any(rx.match(c) for c in candidates):
            ignored = not negate
    return ignored


def _is_build_junk(rel: str) -> bool:
    parts = rel.split("/")
    return "__pycache__" in parts or rel.endswith(".pyc") or any(
        p.endswith(".egg-info") for p in parts)


# ---------------------------------------------------------------------------------------------
# Checks of the Dockerfile (each returns a list of problems; [] = fine)
# ---------------------------------------------------------------------------------------------

def image_ref(ref: str) -> Tuple[str, Optional[str], Optional[str]]:
    """`repo[:tag][@digest]` -> (repo, tag, digest); a registry port is not a tag."""
    name, _, digest = ref.partition("@")
    last = name.rsplit("/", 1)[-1]
    tag = None
    if ":" in last:
        name, tag = name.rsplit(":", 1)
    return name, tag, digest or None


def pin_problems(ref: str, what: str) -> List[str]:
    repo, tag, digest = image_ref(ref)
    if digest:
        return [] if re.fullmatch(r"sha256:[0-9a-f]{64}", digest) else [
            f"{what}: malformed digest {digest!r}"]
    if not tag:
        return [f"{what}: {ref!r} is not pinned (no tag, no digest)"]
    if tag == "latest" or not re.search(r"\d", tag):
        return [f"{what}: {ref!r} is pinned to a moving tag {tag!r}"]
    return []


def base_image_problems(instrs: List[Instruction]) -> List[str]:
    froms = [i for i in instrs if i.cmd == "FROM"]
    if not froms:
        return ["no FROM"]
    ref = froms[-1].expanded.split()[0]
    problems = []
    if image_ref(ref)[0] != GADGETRON_RUNTIME_REPO:
        problems.append(f"FROM {ref!r} is not the Gadgetron runtime image {GADGETRON_RUNTIME_REPO}")
    return problems + pin_problems(ref, "FROM")


def copy_sources(instr: Instruction) -> Tuple[Dict[str, str], List[str], str]:
    flags, tokens = split_flags(instr.expanded)
    return flags, tokens[:-1], tokens[-1]


def copy_problems(instrs: List[Instruction], context: Path, ignore_text: str) -> List[str]:
    rules = read_ignore(ignore_text)
    problems = []
    for instr in instrs:
        if instr.cmd not in ("COPY", "ADD"):
            continue
        flags, sources, _dest = copy_sources(instr)
        if "from" in flags:
            continue
        if not sources:
            problems.append(f"line {instr.line}: {instr.cmd} without a source")
        for src in sources:
            if re.match(r"[a-z]+://", src):
                problems.append(f"line {instr.line}: {instr.cmd} {src}: remote source (unpinned)")
                continue
            matches = sorted(context.glob(src.lstrip("/")))
            if not matches:
                problems.append(f"line {instr.line}: {instr.cmd} source {src!r} does not exist "
                                f"in the build context {context}")
            for path in matches:
                rel = path.relative_to(context).as_posix()
                files = [rel] if path.is_file() else [
                    p.relative_to(context).as_posix() for p in path.rglob("*") if p.is_file()]
                if is_ignored(rel, rules) or not files:
                    problems.append(f"line {instr.line}: {instr.cmd} source {rel!r} is excluded "
                                    "by the dockerignore (or empty)")
                    continue
                dropped = [f for f in files if is_ignored(f, rules) and not _is_build_junk(f)]
                if dropped:
                    problems.append(f"line {instr.line}: the dockerignore drops {dropped[:3]} "
                                    f"from COPY source {rel!r}")
    return problems


def stage_copies(instrs: List[Instruction], context: Path, ignore_text: str, root: Path) -> None:
    """Replay the final stage's COPYs (without --from) into ``root`` as the image's filesystem."""
    rules = read_ignore(ignore_text)
    workdir = "/"
    for instr in final_stage(instrs):
        if instr.cmd == "WORKDIR":
            workdir = os.path.join(workdir, instr.expanded.strip())
        if instr.cmd not in ("COPY", "ADD"):
            continue
        flags, sources, dest = copy_sources(instr)
        if "from" in flags:
            continue
        dest_abs = os.path.join(workdir, dest)
        paths = [p for s in sources for p in sorted(context.glob(s.lstrip("/")))]
        into_dir = dest.endswith("/") or len(paths) > 1
        target = root / dest_abs.lstrip("/")
        for path in paths:
            rel = path.relative_to(context).as_posix()
            if path.is_dir():
                for f in path.rglob("*"):
                    frel = f.relative_to(context).as_posix()
                    if f.is_file() and not is_ignored(frel, rules):
                        out = target / f.relative_to(path)
                        out.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copy2(f, out)
            elif not is_ignored(rel, rules):
                out = target / path.name if into_dir else target
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, out)


def scope_of(instrs: List[Instruction]) -> Dict[str, str]:
    return final_stage(instrs)[-1].env


def config_dir(instrs: List[Instruction]) -> str:
    prefix = scope_of(instrs).get("GADGETRON_PREFIX", "")
    return f"{prefix}/share/gadgetron/config"


def package_dir(instrs: List[Instruction]) -> Optional[str]:
    """Where the Dockerfile copies pyproject.toml (the directory pip installs)."""
    for instr in final_stage(instrs):
        if instr.cmd == "COPY":
            flags, sources, dest = copy_sources(instr)
            if "pyproject.toml" in sources:
                return dest.rstrip("/") if dest.endswith("/") or len(sources) > 1 \
                    else os.path.dirname(dest)
    return None


def runtime_problems(instrs: List[Instruction], serve_port: int) -> List[str]:
    stage = final_stage(instrs)
    scope = scope_of(instrs)
    problems = []

    users = [i.expanded.strip() for i in stage if i.cmd == "USER"]
    if not users or users[-1].split(":")[0] in ("root", "0", ""):
        problems.append(f"the image runs as root (last USER: {users[-1] if users else None!r})")

    checks = [i for i in stage if i.cmd == "HEALTHCHECK"]
    if not checks or checks[-1].args.strip().upper() == "NONE":
        problems.append("no HEALTHCHECK")
    else:
        hc = checks[-1].args
        argv = json.loads(hc[hc.index("CMD") + 3:].strip()) if "CMD [" in hc else []
        python = f"{scope.get('GADGETRON_PREFIX', '?')}/bin/python"
        if not argv or argv[0] != python or str(GADGETRON_PORT) not in argv:
            problems.append(f"HEALTHCHECK {argv} does not run {python} on port {GADGETRON_PORT}")

    if scope.get("HF_HUB_OFFLINE") != "1":
        problems.append(f"HF_HUB_OFFLINE={scope.get('HF_HUB_OFFLINE')!r}, want '1'")
    if not scope.get("PATH", "").startswith(f"{scope.get('GADGETRON_PREFIX', '?')}/bin:"):
        problems.append("the conda env's bin/ is not first on PATH (Gadgetron runs `python`)")

    exposed = {int(p.split("/")[0]) for i in stage if i.cmd == "EXPOSE" for p in i.expanded.split()}
    for port in (GADGETRON_PORT, serve_port):
        if port not in exposed:
            problems.append(f"port {port} is not EXPOSEd (EXPOSE {sorted(exposed)})")

    cmds = [i.exec_form() for i in stage if i.cmd == "CMD"]
    entry = [i.exec_form() for i in stage if i.cmd == "ENTRYPOINT"]
    argv = (entry[-1] if entry else []) + (cmds[-1] if cmds and cmds[-1] else [])
    if not cmds or not cmds[-1] or "gadgetron" not in [os.path.basename(a) for a in argv]:
        problems.append(f"the default command {argv} does not run gadgetron")

    args = {}
    for i in stage:
        if i.cmd == "ARG":
            for token in shlex.split(i.args):
                name, _, default = token.partition("=")
                args[name] = default
    if args.get("TORCH_VERSION") != TORCH_VERSION:
        problems.append(f"ARG TORCH_VERSION={args.get('TORCH_VERSION')!r}, want {TORCH_VERSION}")
    if not args.get("TORCH_INDEX_URL"):
        problems.append("no ARG TORCH_INDEX_URL with a default")

    runs = [(n, i.args) for n, i in enumerate(stage) if i.cmd == "RUN"]
    torch_runs = [n for n, text in runs if "torch==${TORCH_VERSION}" in text
                  and re.search(r"--index-url\s+\"?\$\{TORCH_INDEX_URL\}", text)]
    pkg = package_dir(instrs)
    pkg_runs = [n for n, text in runs if pkg and re.search(
        r"pip install\b.*\s" + re.escape(pkg) + r"(\s|$)", text)]
    if not torch_runs:
        problems.append("no RUN installs torch==${TORCH_VERSION} from ${TORCH_INDEX_URL}")
    if not pkg_runs:
        problems.append(f"no RUN pip-installs the copied package ({pkg})")
    if torch_runs and pkg_runs and min(torch_runs) > min(pkg_runs):
        problems.append("torch is installed after the package (pip would pick its own torch)")
    if pkg_runs and "conda" not in stage[pkg_runs[0]].args and \
            f"{scope.get('GADGETRON_PREFIX', '?')}/bin/python" not in \
            substitute(stage[pkg_runs[0]].args, stage[pkg_runs[0]].env):
        problems.append("the package is not installed with the conda env's python")
    return problems


def load_dockerfile(path: Path = DOCKERFILE, **kw) -> List[Instruction]:
    return parse_dockerfile(path.read_text(), **kw)


# ---------------------------------------------------------------------------------------------
# Checks of compose.yaml
# ---------------------------------------------------------------------------------------------

def published_ports(service: dict) -> List[Tuple[Optional[str], Optional[str], str]]:
    """(host_ip, published, target) for every `ports:` entry, short or long syntax."""
    out = []
    for entry in service.get("ports", []) or []:
        if isinstance(entry, dict):
            out.append((entry.get("host_ip"), str(entry.get("published", "")) or None,
                        str(entry["target"])))
            continue
        spec = str(entry).split("/")[0]
        m = re.fullmatch(r"(?:(\[[^\]]+\]|[^:\[\]]+):)?(?:([\d-]*):)?([\d-]+)", spec)
        if not m:
            out.append(("unparsed", None, spec))
            continue
        ip, published, target = m.groups()
        if ip is not None and published is None:  # "9002:9002" -> ip group took the host port
            ip, published = None, ip
        out.append((ip, published, target))
    return out


def serve_parser() -> argparse.ArgumentParser:
    from contextmri_core.cli import serve

    class Raising(argparse.ArgumentParser):
        def error(self, message):  # noqa: D401 - raise instead of sys.exit
            raise ValueError(message)

    top = Raising(prog="contextmri")
    sub = top.add_subparsers(dest="command", parser_class=Raising)
    serve.register(sub)
    return top


def connect_port(pipelines: Path = REPO / "pipelines") -> int:
    root = ET.parse(pipelines / "contextmri_connect.xml").getroot()
    return int(root.find("stream/external/connect").get("port"))


def compose_problems(doc: dict, compose_dir: Path = DOCKER) -> List[str]:
    problems = []
    services = doc.get("services") or {}
    missing = {"gadgetron", "contextmri-serve", "orthanc"} - set(services)
    if missing:
        return [f"services missing: {sorted(missing)}"]

    # every published port: host side on loopback only
    for name, svc in services.items():
        if svc.get("network_mode") == "host":
            problems.append(f"{name}: network_mode host bypasses the port rules")
        for ip, published, target in published_ports(svc):
            if ip is None or ip not in LOOPBACK:
                problems.append(f"{name}: port {target} published on {ip or '0.0.0.0'} "
                                "(host side must be 127.0.0.1)")

    # the recon services run the image built from docker/Dockerfile
    built = {}
    for name in ("gadgetron", "contextmri-serve"):
        build = services[name].get("build")
        if build is None:
            continue
        if isinstance(build, str):
            build = {"context": build}
        context = (compose_dir / build.get("context", ".")).resolve()
        dockerfile = (context / build.get("dockerfile", "Dockerfile")).resolve()
        if dockerfile != DOCKERFILE.resolve() or context != REPO.resolve():
            problems.append(f"{name}: builds {dockerfile} in context {context}, not "
                            f"docker/Dockerfile in the repo root")
        else:
            built[services[name].get("image")] = name
    for name in ("gadgetron", "contextmri-serve"):
        image = services[name].get("image")
        if image not in built:
            problems.append(f"{name}: image {image!r} is not built from docker/Dockerfile here")
        elif services[name].get("build") is None and services[name].get("pull_policy") != "never":
            problems.append(f"{name}: uses the locally built {image!r} but may try to pull it "
                            "(set pull_policy: never)")

    # gadgetron listens where it is published
    gt = services["gadgetron"]
    argv = gt.get("command") or []
    port = int(argv[argv.index("--port") + 1]) if "--port" in argv else GADGETRON_PORT
    if str(port) not in [t for _, _, t in published_ports(gt)]:
        problems.append(f"gadgetron listens on {port} but does not publish it")

    # the warm server: real CLI flags, the port contextmri_connect.xml connects to
    serve = services["contextmri-serve"]
    argv = serve.get("command") or []
    if isinstance(argv, str):
        argv = shlex.split(argv)
    if argv[:2] != ["contextmri", "serve"]:
        problems.append(f"contextmri-serve runs {argv[:2]}, not `contextmri serve`")
    else:
        try:
            args = serve_parser().parse_args(argv[1:])
        except ValueError as exc:
            problems.append(f"contextmri-serve: `contextmri serve` rejects {argv[2:]}: {exc}")
            args = None
        if args is not None:
            want = connect_port()
            if args.port != want:
                problems.append(f"contextmri-serve listens on {args.port}, "
                                f"contextmri_connect.xml connects to {want}")
            mode = serve.get("network_mode", "")
            if not mode.startswith("service:"):
                problems.append("contextmri-serve is not in the gadgetron service's network "
                                "namespace, so <connect address=localhost> cannot reach it")
            else:
                owner = services.get(mode.split(":", 1)[1], {})
                targets = [t for _, _, t in published_ports(owner)]
                if serve.get("ports"):
                    problems.append("contextmri-serve publishes ports itself (network_mode "
                                    "service: needs them on the namespace owner)")
                if str(args.port) not in targets:
                    problems.append(f"the serve port {args.port} is not published (on 127.0.0.1)"
                                    f" by the namespace owner {mode}")
            test = (serve.get("healthcheck") or {}).get("test") or []
            if str(args.port) not in [str(t) for t in test]:
                problems.append(f"contextmri-serve healthcheck {test} does not probe {args.port}")

    # the demo PACS: pinned, DICOM port not on the host
    orthanc = services["orthanc"]
    image = orthanc.get("image", "")
    if image_ref(image)[0] not in ORTHANC_REPOS:
        problems.append(f"orthanc image {image!r} is not {ORTHANC_REPOS}")
    problems += pin_problems(image, "orthanc")
    if str(ORTHANC_DICOM_PORT) in [t for _, _, t in published_ports(orthanc)]:
        problems.append("orthanc publishes its DICOM port on the host")
    password = str((orthanc.get("environment") or {}).get("ORTHANC_PASSWORD", ""))
    if password and not password.startswith("${"):
        problems.append("orthanc: a literal password in compose.yaml")
    return problems


# ---------------------------------------------------------------------------------------------
# Package data / wheel
# ---------------------------------------------------------------------------------------------

def _toml(path: Path) -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    return tomllib.loads(path.read_text())


def declared_model_files(repo: Path = REPO) -> List[Path]:
    data = _toml(repo / "pyproject.toml")["tool"]["setuptools"]["package-data"]
    files = set()
    for pattern in data.get("contextmri_core", []):
        files.update(p for p in (repo / "contextmri_core").glob(pattern) if p.is_file())
    return sorted(f for f in files if "models/default" in f.as_posix())


def safetensors_problems(path: Path) -> List[str]:
    raw = path.read_bytes()
    if len(raw) < 8:
        return [f"{path.name}: {len(raw)} bytes"]
    (n,) = struct.unpack("<Q", raw[:8])
    if n > len(raw) - 8:
        return [f"{path.name}: header length {n} > file (a Git LFS pointer?)"]
    try:
        header = json.loads(raw[8:8 + n])
    except ValueError:
        return [f"{path.name}: header is not JSON"]
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    end = max((v["data_offsets"][1] for v in tensors.values()), default=-1)
    if not tensors or 8 + n + end != len(raw):
        return [f"{path.name}: {len(tensors)} tensors, data ends at {end}, file {len(raw)}"]
    return []


def build_wheel(src: Path, out: Path) -> Path:
    pytest.importorskip("setuptools")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                           "--no-build-isolation", "-q", str(src), "-w", str(out)],
                          capture_output=True, text=True, timeout=300)
    if proc.returncode:
        raise RuntimeError(f"pip wheel failed:\n{proc.stdout}\n{proc.stderr}")
    (wheel,) = out.glob("contextmri-*.whl")
    return wheel


def wheel_problems(wheel: Path) -> List[str]:
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        entry = next((z.read(n).decode() for n in names if n.endswith("entry_points.txt")), "")
        meta = next((z.read(n).decode() for n in names if n.endswith(".dist-info/METADATA")), "")
    problems = []
    readme_start = (REPO / "README.md").read_text().strip().splitlines()[0]
    if readme_start not in meta.partition("\n\n")[2]:
        problems.append("the wheel's description is not README.md (pyproject `readme` missing)")
    for f in declared_model_files():
        rel = f.relative_to(REPO).as_posix()
        if rel not in names:
            problems.append(f"the wheel lacks {rel}")
    if "gadgets/contextmri.py" not in names:
        problems.append("the wheel lacks gadgets/contextmri.py")
    if not re.search(r"^contextmri\s*=\s*contextmri_core\.cli\.main:main", entry, re.M):
        problems.append("the wheel has no `contextmri` console script")
    return problems


# =============================================================================================
# Tests
# =============================================================================================

@pytest.fixture(scope="module")
def instrs() -> List[Instruction]:
    return load_dockerfile()


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def serve_port(compose) -> int:
    argv = compose["services"]["contextmri-serve"]["command"]
    return int(argv[argv.index("--port") + 1])


@pytest.fixture(scope="module")
def staged(instrs, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("image_root")
    stage_copies(instrs, REPO, DOCKERIGNORE.read_text(), root)
    return root


@pytest.fixture(scope="module")
def wheel(instrs, staged, tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("pkg_src")
    shutil.copytree(staged / package_dir(instrs).lstrip("/"), src, dirs_exist_ok=True)
    return build_wheel(src, tmp_path_factory.mktemp("wheel"))


# --- the parser itself -----------------------------------------------------------------------

def test_parser_joins_continuations_drops_inner_comments_and_scopes_args():
    text = "\n".join([
        "# escape=\\",
        "ARG BASE=img:1",
        "ARG ONLY_GLOBAL=g",
        "FROM ${BASE} AS x",
        "ARG BASE",
        "ENV A=1 \\",
        "    # a comment inside the continuation",
        "    B=${A}x",
        "COPY --chown=1:1 a b \\",
        "     /dst/",
        "LABEL base=${BASE} g=${ONLY_GLOBAL} d=${NOPE:-dflt}",
        'CMD ["gadgetron", "--port", "9002"]',
    ])
    ins = parse_dockerfile(text)
    assert [i.cmd for i in ins] == ["ARG", "ARG", "FROM", "ARG", "ENV", "COPY", "LABEL", "CMD"]
    assert ins[2].expanded == "img:1 AS x"
    assert ins[4].env["A"] == "1" and ins[4].env["B"] == "x"  # same-instruction ENV: old scope
    assert split_flags(ins[5].expanded) == ({"chown": "1:1"}, ["a", "b", "/dst/"])
    assert split_flags('--link ["a b", "/d/"]') == ({"link": ""}, ["a b", "/d/"])
    assert ins[5].line == 9
    assert ins[6].expanded == "base=img:1 g= d=dflt"           # ONLY_GLOBAL not redeclared
    assert ins[7].exec_form() == ["gadgetron", "--port", "9002"]
    assert parse_dockerfile(text, {"BASE": "other:2"})[2].expanded == "other:2 AS x"


def test_dockerignore_matching_follows_docker_semantics():
    rules = read_ignore("*\n!pkg\n**/__pycache__\n!keep.txt\n")
    assert is_ignored(".venv/lib/x.py", rules)
    assert not is_ignored("pkg/a/b.py", rules)
    assert is_ignored("pkg/a/__pycache__/b.pyc", rules)
    assert not is_ignored("keep.txt", rules)
    assert is_ignored("other.txt", rules)


# --- Dockerfile: base image ------------------------------------------------------------------

def test_base_image_is_the_pinned_gadgetron_runtime_image(instrs):
    assert base_image_problems(instrs) == []
    ref = [i for i in instrs if i.cmd == "FROM"][-1].expanded.split()[0]
    assert ref.startswith(GADGETRON_RUNTIME_REPO + ":")


@pytest.mark.parametrize("ref, expect", [
    (GADGETRON_RUNTIME_REPO + ":latest", "moving tag"),
    (GADGETRON_RUNTIME_REPO, "not pinned"),
    ("ubuntu:22.04", "not the Gadgetron runtime image"),
    ("ghcr.io/gadgetron/gadgetron/ubuntu22.04_rt_nocuda:4.7.2", "not the Gadgetron runtime"),
    (GADGETRON_RUNTIME_REPO + "@sha256:abc", "malformed digest"),
])
def test_base_image_check_catches_unpinned_or_wrong_images(ref, expect):
    assert any(expect in p for p in base_image_problems(load_dockerfile(
        build_args={"GADGETRON_IMAGE": ref})))


def test_base_image_check_accepts_a_digest():
    ref = GADGETRON_RUNTIME_REPO + "@sha256:" + "0" * 64
    assert base_image_problems(load_dockerfile(build_args={"GADGETRON_IMAGE": ref})) == []


# --- Dockerfile: COPY sources and the build context ------------------------------------------

def test_every_copy_source_exists_and_survives_the_dockerignore(instrs):
    assert [i for i in instrs if i.cmd in ("COPY", "ADD")], "the Dockerfile copies nothing?"
    assert copy_problems(instrs, REPO, DOCKERIGNORE.read_text()) == []


def test_copy_check_catches_missing_sources_and_ignored_files(instrs, tmp_path):
    broken = DOCKERFILE.read_text().replace("COPY gadgets /opt", "COPY gadgetz /opt")
    problems = copy_problems(parse_dockerfile(broken), REPO, DOCKERIGNORE.read_text())
    assert any("'gadgetz' does not exist" in p for p in problems)
    ignore = DOCKERIGNORE.read_text() + "\ncontextmri_core/models\n"
    problems = copy_problems(instrs, REPO, ignore)
    assert any("unet.safetensors" in p or "models" in p for p in problems)
    ignore = DOCKERIGNORE.read_text().replace("!README.md\n", "")
    assert any("'README.md' is excluded" in p for p in copy_problems(instrs, REPO, ignore))


def test_dockerignore_keeps_the_venv_and_data_out():
    rules = read_ignore(DOCKERIGNORE.read_text())
    for rel in (".venv/bin/python", ".venv-compat/lib/x.py", "data/sim/a.h5", "runs/x/model",
                ".git/HEAD", "contextmri.egg-info/PKG-INFO", "demo_out/demo.png",
                "contextmri_core/__pycache__/x.cpython-311.pyc"):
        assert is_ignored(rel, rules), rel
    for rel in ("contextmri_core/models/default/unet.safetensors",
                "pipelines/contextmri_connect.xml", "pyproject.toml", "README.md",
                "gadgets/contextmri.py", "docker/healthcheck.py"):
        assert not is_ignored(rel, rules), rel


# --- what lands in the image -----------------------------------------------------------------

def test_gadgetron_config_path_is_the_envs_share_gadgetron_config(instrs):
    # Gadgetron home = parent of the gadgetron executable's bin/ (core/gadgetron_paths.cpp);
    # configs in <home>/share/gadgetron/config (CMakeLists.txt GADGETRON_INSTALL_CONFIG_PATH)
    assert config_dir(instrs) == "/opt/conda/envs/gadgetron/share/gadgetron/config"


def test_every_installed_pipeline_parses_and_its_gadget_imports(instrs, staged):
    installed = sorted((staged / config_dir(instrs).lstrip("/")).glob("*.xml"))
    assert {p.name for p in installed} == {p.name for p in (REPO / "pipelines").glob("*.xml")}
    modules = set()
    for path in installed:
        check_pipeline(path)  # tests/gadgets/test_pipelines.py: parses, modules import
        modules |= {e.get("name") for e in ET.parse(path).getroot().iter("execute")}
    assert modules == {"gadgets.contextmri"}


def test_pipeline_check_fails_on_a_broken_copy(tmp_path):
    bad = tmp_path / "contextmri_bad.xml"
    bad.write_text((REPO / "pipelines" / "contextmri_buffers.xml").read_text()
                   .replace('name="gadgets.contextmri"', 'name="gadgets.contextmrii"'))
    with pytest.raises(ModuleNotFoundError):
        check_pipeline(bad)
    bad.write_text("<configuration><stream>")
    with pytest.raises(ET.ParseError):
        check_pipeline(bad)


def test_pipeline_staging_catches_a_wrong_config_destination(tmp_path):
    wrong = DOCKERFILE.read_text().replace("/share/gadgetron/config/", "/share/gadgetron/")
    ins = parse_dockerfile(wrong)
    stage_copies(ins, REPO, DOCKERIGNORE.read_text(), tmp_path)
    cfg = tmp_path / "opt/conda/envs/gadgetron/share/gadgetron/config"
    assert not list(cfg.glob("*.xml"))


def test_declared_model_files_exist_and_are_real_safetensors():
    files = declared_model_files()
    names = {f.name for f in files}
    assert {"contextmri.yaml", "unet.safetensors", "encoder.safetensors"} <= names
    for f in files:
        if f.suffix == ".safetensors":
            assert safetensors_problems(f) == []
    doc = yaml.safe_load((REPO / "contextmri_core/models/default/contextmri.yaml").read_text())
    assert isinstance(doc, dict) and "unet" in doc


def test_safetensors_check_catches_an_lfs_pointer(tmp_path):
    pointer = tmp_path / "unet.safetensors"
    pointer.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 1\n")
    assert safetensors_problems(pointer)
    truncated = tmp_path / "encoder.safetensors"
    truncated.write_bytes((REPO / "contextmri_core/models/default/encoder.safetensors")
                          .read_bytes()[:-100])
    assert safetensors_problems(truncated)


def test_the_copied_package_builds_a_wheel_with_the_model_and_the_gadget(wheel):
    assert wheel_problems(wheel) == []


def test_wheel_check_fails_without_the_model(instrs, staged, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(staged / package_dir(instrs).lstrip("/"), src)
    shutil.rmtree(src / "contextmri_core/models/default")
    assert any("unet.safetensors" in p for p in wheel_problems(build_wheel(src, tmp_path / "w")))


def test_wheel_check_fails_if_the_readme_is_not_copied(instrs, staged, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(staged / package_dir(instrs).lstrip("/"), src)
    (src / "README.md").unlink()   # pyproject's `readme`: what a COPY without it would give
    assert any("README" in p for p in wheel_problems(build_wheel(src, tmp_path / "w")))


# --- runtime settings ------------------------------------------------------------------------

def test_runtime_user_healthcheck_env_ports_cmd_and_torch(instrs, serve_port):
    assert runtime_problems(instrs, serve_port) == []


@pytest.mark.parametrize("old, new, expect", [
    ("USER ${RUN_USER}", "USER root", "runs as root"),
    ("ARG RUN_USER=vscode", "ARG RUN_USER=0", "runs as root"),
    ("HF_HUB_OFFLINE=1", "HF_HUB_OFFLINE=0", "HF_HUB_OFFLINE"),
    ("EXPOSE 9002 18000", "EXPOSE 9002", "18000 is not EXPOSEd"),
    ('CMD ["gadgetron", "--port", "9002"]', 'CMD ["bash"]', "does not run gadgetron"),
    ("ARG TORCH_VERSION=2.13.0", "ARG TORCH_VERSION=2.5.1", "TORCH_VERSION"),
    ('--index-url "${TORCH_INDEX_URL}"', "", "no RUN installs torch"),
    ("ENV PATH=${GADGETRON_PREFIX}/bin:${PATH}", "ENV PATH=${PATH}:${GADGETRON_PREFIX}/bin",
     "first on PATH"),
    ("HEALTHCHECK --interval", "HEALTHCHECK NONE\n# --interval", "no HEALTHCHECK"),
    ('CMD ["/opt/conda/envs/gadgetron/bin/python"', 'CMD ["python3"', "HEALTHCHECK"),
    ('"${GADGETRON_PREFIX}/bin/python" -m pip install \\\n         -c /tmp/contextmri-build/'
     'constraints.txt /opt/contextmri', "pip install /opt/contextmri", "conda env's python"),
    ("-c /tmp/contextmri-build/constraints.txt /opt/contextmri", "-r requirements.txt",
     "no RUN pip-installs the copied package"),
])
def test_runtime_check_catches_a_broken_dockerfile(old, new, expect, serve_port):
    text = DOCKERFILE.read_text()
    assert old in text, old
    problems = runtime_problems(parse_dockerfile(text.replace(old, new, 1)), serve_port)
    assert any(expect in p for p in problems), problems


def test_runtime_check_catches_torch_after_the_package(serve_port):
    text = DOCKERFILE.read_text()
    torch_run = text[text.index('RUN "${GADGETRON_PREFIX}/bin/python" -m pip --version'):
                     text.index("# The package (a regular")]
    moved = text.replace(torch_run, "").replace("# The Gadgetron stream configurations",
                                                torch_run + "# The Gadgetron stream configurations")
    problems = runtime_problems(parse_dockerfile(moved), serve_port)
    assert any("after the package" in p for p in problems), problems


# --- the scripts the image runs --------------------------------------------------------------

def _run_entrypoint(tmp_path: Path, *args: str, profile: Optional[Path] = None):
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    stub = bindir / "gadgetron"
    stub.write_text('#!/bin/sh\necho "GADGETRON[$ACTIVATED] $*"\n')
    stub.chmod(0o755)
    env = dict(os.environ, PATH=f"{bindir}:{os.environ['PATH']}",
               CONDA_PROFILE=str(profile or tmp_path / "absent.sh"), ACTIVATED="")
    return subprocess.run(["bash", str(DOCKER / "entrypoint.sh"), *args], env=env,
                          capture_output=True, text=True, timeout=30)


def test_entrypoint_runs_gadgetron_for_options_and_commands_otherwise(tmp_path):
    assert _run_entrypoint(tmp_path).stdout.strip() == "GADGETRON[]"
    assert _run_entrypoint(tmp_path, "-p", "9010").stdout.strip() == "GADGETRON[] -p 9010"
    assert _run_entrypoint(tmp_path, "echo", "serve").stdout.strip() == "serve"
    profile = tmp_path / "conda.sh"
    profile.write_text('conda() { export ACTIVATED="$1:$2"; }\n')
    out = _run_entrypoint(tmp_path, "--info", profile=profile)
    assert out.stdout.strip() == "GADGETRON[activate:gadgetron] --info", out.stderr


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(name.replace(".py", ""), DOCKER / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_healthcheck_parses_proc_net_tcp_listen_entries(tmp_path):
    hc = _load_script("healthcheck.py")
    table = tmp_path / "tcp"
    table.write_text(
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid\n"
        "   0: 00000000:232A 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000\n"
        "   1: 0100007F:4650 0100007F:9C40 01 00000000:00000000 00:00000000 00000000  1000\n")
    assert hc.listening_ports([str(table), str(tmp_path / "absent")]) == {9002}


def test_healthcheck_script_against_a_real_socket():
    script = [sys.executable, str(DOCKER / "healthcheck.py")]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert subprocess.run(script + [str(port)], timeout=30).returncode == 0
    assert subprocess.run(script + [str(port)], capture_output=True, timeout=30).returncode == 1
    assert subprocess.run(script, capture_output=True, timeout=30).returncode == 2


def _installed(name: str) -> Optional[str]:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def test_runtime_constraints_pin_the_installed_numpy_ismrmrd_gadgetron():
    proc = subprocess.run([sys.executable, str(DOCKER / "runtime_constraints.py"),
                           f"torch=={TORCH_VERSION}"], capture_output=True, text=True, timeout=60)
    kept = {n: _installed(n) for n in ("numpy", "ismrmrd", "gadgetron")}
    missing = [n for n, v in kept.items() if v is None]
    if missing:  # e.g. a venv without gadgetron-python: the script must refuse, loudly
        assert proc.returncode == 1 and f"{missing[0]} is not installed" in proc.stderr
    else:
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.split() == [f"{n}=={v}" for n, v in kept.items()] + [
            f"torch=={TORCH_VERSION}"]


def test_runtime_constraints_fail_when_a_kept_package_is_missing(tmp_path):
    proc = subprocess.run([sys.executable, "-S", "-c",
                           f"import runpy, sys; sys.path[:0] = ['{DOCKER}']; sys.argv = ['x'];"
                           "runpy.run_path(sys.path[0] + '/runtime_constraints.py', "
                           "run_name='__main__')"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "is not installed" in proc.stderr


def test_check_image_passes_on_the_installed_wheel_and_flags_problems(wheel, tmp_path):
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                    str(site), str(wheel)], check=True, capture_output=True, timeout=300)
    cfg = tmp_path / "config"
    shutil.copytree(REPO / "pipelines", cfg)
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("".join(f"{n}=={_installed(n)}\n"
                                   for n in ("numpy", "ismrmrd", "torch")))
    env = dict(os.environ, PYTHONPATH=str(site),
               PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    cmd = [sys.executable, str(DOCKER / "check_image.py"), "--config-dir", str(cfg),
           "--constraints", str(constraints)]
    ok = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert "check_image: ok" in ok.stdout

    # broken: a pipeline naming a missing target, a wrong pin, the model from a source tree
    (cfg / "contextmri_buffers.xml").write_text(
        (REPO / "pipelines/contextmri_buffers.xml").read_text().replace(
            'target="buffers"', 'target="bufers"'))
    constraints.write_text("numpy==0.0.1\n")
    env["PYTHONPATH"] = str(REPO)
    bad = subprocess.run(cmd + ["--no-load-model"], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1
    assert "gadgets.contextmri.bufers is not callable" in bad.stderr
    assert "numpy" in bad.stderr and "0.0.1 pinned" in bad.stderr
    assert "source tree" in bad.stderr


# --- compose ---------------------------------------------------------------------------------

def test_compose_services_image_ports_orthanc_and_serve(compose):
    assert compose_problems(compose) == []


def test_compose_gpu_override_reserves_a_gpu_for_both_recon_services():
    doc = yaml.safe_load(COMPOSE_GPU.read_text())
    for name in ("gadgetron", "contextmri-serve"):
        devices = doc["services"][name]["deploy"]["resources"]["reservations"]["devices"]
        assert any("gpu" in d.get("capabilities", []) and d.get("driver") == "nvidia"
                   for d in devices), name
    assert not any(s.get("ports") for s in doc["services"].values())


def test_published_port_parser():
    assert published_ports({"ports": ["127.0.0.1:9002:9002", "9002:9002", "8042",
                                      "0.0.0.0:1:2/udp", "[::1]:5:6",
                                      {"target": 8042, "published": 8042}]}) == [
        ("127.0.0.1", "9002", "9002"), (None, "9002", "9002"), (None, None, "8042"),
        ("0.0.0.0", "1", "2"), ("[::1]", "5", "6"), (None, "8042", "8042")]


def _mutate(compose: dict, path: List, value) -> dict:
    doc = json.loads(json.dumps(compose))
    node = doc
    for key in path[:-1]:
        node = node[key]
    if value is _DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return doc


_DELETE = object()
_S = "services"


@pytest.mark.parametrize("path, value, expect", [
    ([_S, "gadgetron", "ports", 0], "9002:9002", "published on 0.0.0.0"),
    ([_S, "orthanc", "ports", 0], "0.0.0.0:8042:8042", "published on 0.0.0.0"),
    ([_S, "orthanc", "ports", 0], {"target": 8042, "published": 8042}, "on 0.0.0.0"),
    ([_S, "orthanc", "ports"], ["127.0.0.1:8042:8042", "127.0.0.1:4242:4242"], "DICOM port"),
    ([_S, "orthanc", "network_mode"], "host", "network_mode host"),
    ([_S, "orthanc", "image"], "orthancteam/orthanc", "not pinned"),
    ([_S, "orthanc", "image"], "orthancteam/orthanc:latest", "moving tag"),
    ([_S, "orthanc", "image"], "nginx:1.27", "is not"),
    ([_S, "orthanc", "environment", "ORTHANC_PASSWORD"], "orthanc", "literal password"),
    ([_S, "gadgetron", "build", "dockerfile"], "Dockerfile", "not docker/Dockerfile"),
    ([_S, "gadgetron", "build", "context"], ".", "not docker/Dockerfile"),
    ([_S, "contextmri-serve", "image"], "contextmri/other:1", "not built from"),
    ([_S, "contextmri-serve", "pull_policy"], _DELETE, "pull_policy"),
    ([_S, "contextmri-serve", "command", 5], "18001", "contextmri_connect.xml connects to"),
    ([_S, "contextmri-serve", "command", 4], "--prot", "rejects"),
    ([_S, "contextmri-serve", "command", 1], "replay", "not `contextmri serve`"),
    ([_S, "contextmri-serve", "network_mode"], _DELETE, "network namespace"),
    ([_S, "contextmri-serve", "healthcheck", "test", 3], "9002", "does not probe"),
    ([_S, "gadgetron", "ports", 1], "127.0.0.1:18001:18001", "is not published"),
    ([_S, "gadgetron", "command"], ["gadgetron", "--port", "9003"], "does not publish it"),
    ([_S, "orthanc"], _DELETE, "services missing"),
])
def test_compose_check_catches_a_broken_copy(compose, path, value, expect):
    problems = compose_problems(_mutate(compose, path, value))
    assert any(expect in p for p in problems), problems
