"""Checks before a run starts: sources no verb can build, and inputs that cannot be fetched here
(not on disk, not in a local mirror, download host unreachable). common.smk calls both so a suite that
cannot run stops with one message before any job, instead of failing hours in."""

from __future__ import annotations

from pathlib import Path

from dfg import DfgError
from dfg.workflow.plan import Plan


def check_buildable(plan: Plan) -> None:
    """Sources that no verb can build here: neither a dataset to pre-train on nor named weights."""
    from dfg.models.weights import WEIGHTS

    for s in plan.sources():
        src = plan.source(s)
        if not src.get("dataset") and not src.get("weights"):
            raise DfgError(
                f"source {s!r} has neither `dataset` (to pre-train on) nor `weights` (to fetch); "
                f"set one of them under sources.{s} in params.yaml or the suite file")
        if src.get("weights") and src["weights"] not in WEIGHTS:
            raise DfgError(f"sources.{s}.weights: unknown weights {src['weights']!r}; known: "
                           f"{', '.join(WEIGHTS.names())}")


#: Seconds to wait for a TCP connection when deciding, before a run, whether a download can work.
NETWORK_PROBE_TIMEOUT_S = 3.0


def _probe_address(url: str) -> tuple[str | None, int]:
    """Where a download of `url` connects first: the proxy that `dfg fetch` (urllib) would use for it
    (http_proxy / https_proxy, unless no_proxy exempts the host), else the host itself."""
    import urllib.request
    from urllib.parse import urlparse

    u = urlparse(url)
    proxy = urllib.request.getproxies().get(u.scheme)
    if proxy and not urllib.request.proxy_bypass(u.hostname or ""):
        p = urlparse(proxy if "://" in proxy else f"http://{proxy}")
        return p.hostname, p.port or 80
    return u.hostname, u.port or (443 if u.scheme == "https" else 80)


def _reachable(url: str, timeout: float = NETWORK_PROBE_TIMEOUT_S) -> bool:
    import socket

    try:
        with socket.create_connection(_probe_address(url), timeout=timeout):
            return True
    except OSError:
        return False


def _in_mirror(names: list[str], dirs: tuple[str, ...], mirrors: list[str]) -> bool:
    return any(all((Path(m) / d / n).exists() for n in names) for m in mirrors for d in dirs)


def _blocker(what: str, files: list, mirror_dirs: tuple[str, ...], mirrors: list[str]) -> str | None:
    """Why `files` cannot be obtained here, or None when a mirror holds them or their host answers."""
    names = [f.name for f in files]
    if _in_mirror(names, mirror_dirs, mirrors):
        return None
    urls = [u for f in files for u in f.urls]
    if urls and _reachable(urls[0]):
        return None
    return (f"{what} cannot be fetched here (no network to {urls[0] if urls else '?'} and no copy in "
            f"{', '.join(mirrors)}): place {', '.join(names)} in {mirrors[-1]}/{mirror_dirs[0]}/ and rerun")


def unfetchable(plan: Plan) -> list[str]:
    """One message per dataset or weights file that is not on disk, not in a local mirror and whose
    download host cannot be reached: the run would fail there, so it stops before any job starts."""
    from dfg.models.weights import WEIGHTS, torch_hub_checkpoints

    mirrors = list(plan.params["fetch"]["mirrors"])
    out = []
    for ds in plan.fetched_datasets():
        raw = Path(plan.raw_dir(ds))
        if raw.is_dir() and any(raw.iterdir()):
            continue
        spec = plan._datasets.get(ds)
        msg = _blocker(f"dataset {ds!r}", list(spec.files), spec.mirror_dirs, mirrors)
        if msg:
            out.append(msg + ", or drop its task from run.tasks")
    for s in plan.weight_sources():
        if Path(plan.source_model(s)).exists():
            continue
        spec = WEIGHTS.get(plan.source(s)["weights"])
        if (Path(plan.weights_raw_dir(s)) / spec.file.name).exists():
            continue
        msg = _blocker(f"weights {spec.name!r} of source {s!r}", [spec.file], spec.mirror_dirs,
                       [str(torch_hub_checkpoints()), *mirrors])
        if msg:
            out.append(msg)
    return out
