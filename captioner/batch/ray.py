"""The Ray engine: caption a batch on Ray actors, one model each.

``run_ray`` gives each video to ``job.run_job`` on an actor (so the files are
byte-identical to the local engine's) and reports each result through a callback;
it never prints. It joins a cluster by address or starts a private local
instance, and ties every result to its file even when an actor dies.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
from collections import deque
from dataclasses import replace
from typing import Any, Iterator, Sequence

from ..config import CaptionConfig, usable_cpus
from ..errors import CaptionerError, Terminated, elided, os_reason
from ..native import native_stderr_captured
from .job import BatchJob, FileResult, ResultCallback, absolute_model, crashed, run_job
from .local import held, replay, worker_logging

log = logging.getLogger(__name__)

#: Seconds to wait for a first Ray actor to load its model before giving up.
RAY_START_TIMEOUT_S = 600.0


def require_ray():
    try:
        import ray
    except ModuleNotFoundError as exc:
        if exc.name != "ray":  # Ray is there, a module it needs is not: "needs Ray" sent the user to install it again
            raise CaptionerError(f"Ray cannot be imported: {exc}") from None
        raise CaptionerError("the Ray engine needs Ray: pip install 'ray>=2.9'") from None
    except Exception as exc:  # a broken install (a protobuf Ray's generated code does not fit): was a traceback
        raise CaptionerError(f"Ray cannot be imported: {type(exc).__name__}: "
                             f"{elided(' '.join(str(exc).split()), 200)}") from None
    return ray


#: Ray's messages when a cluster refuses a client without its token (token authentication).
_RAY_AUTH_FAILURES = ("InvalidAuthToken", "Unauthenticated", "authentication token")


def _token_auth_from_env() -> None:
    """Join by address with token authentication when the user gave a token (``RAY_AUTH_TOKEN[_PATH]``).

    Ray turns token authentication on by itself only for ``auto`` (a cluster found on
    this node); joining by address it needs ``RAY_AUTH_MODE=token``. A token in the
    environment says which the user wants; ``RAY_AUTH_MODE``, when set, is obeyed.
    """
    if "RAY_AUTH_MODE" not in os.environ and (os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")):
        os.environ["RAY_AUTH_MODE"] = "token"
        try:  # Ray read its configuration when it was imported: have it read the variable again, as Ray does
            from ray._raylet import Config

            Config.initialize("")
        except Exception as exc:  # another Ray version: the variable alone may do
            log.debug("could not refresh Ray's configuration: %s", exc)


def _ray_start_error(address: str | None, exc: BaseException, output: str) -> str:
    """One line for a failed ``ray.init``: what to do when the cluster wants a token, else Ray's reason."""
    if address and any(word in output or word in str(exc) for word in _RAY_AUTH_FAILURES):
        return (f"cannot join the Ray cluster at {address}: it requires its authentication token; set "
                f"RAY_AUTH_TOKEN to the token that `ray get-auth-token` prints on the head node (or run the "
                f"batch on a node of the cluster with --ray-address auto)")
    detail = elided(" ".join(str(exc).split()), 300)  # the end of Ray's message says why
    return f"cannot start Ray{' at ' + address if address else ''}: {detail}"


def _unreachable(address: str, timeout: float = 5.0) -> str | None:
    """Why nothing answers at a ``HOST:PORT`` (or ``ray://HOST:PORT``) address, or None (it answers, or the
    address is ``auto`` or a form Ray resolves itself).

    With nothing listening there, ``ray.init`` retries for minutes, its messages caught with fd 2 and
    Ctrl-C held until it returns: a mistyped address or a head node that is down hung the batch unsaid.
    """
    import re
    import socket

    match = re.fullmatch(r"(?:ray://)?\[?([^\[\]/]+?)\]?:(\d{1,5})", address.strip())
    if match is None:
        return None
    try:
        with socket.create_connection((match.group(1), int(match.group(2))), timeout=timeout) as conn:
            said = b"" if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true") else _first_bytes(conn, timeout)
    except OSError as exc:
        return (f"cannot reach a Ray head at {address} ({os_reason(exc)}): is it running (ray start --head) and the "
                "address right?")
    if said and not (len(said) >= 9 and said[3] == 4):  # Ray's servers speak gRPC: a first frame of HTTP/2 settings
        # a web server there (the dashboard's 8265, a wrong port): ray.init retried for about 14 minutes
        shown = elided(" ".join(said.decode("ascii", "replace").split()), 40)
        return (f"something other than a Ray head answers at {address} (it said {shown!r}): give the head's GCS "
                "address (HOST:6379, as `ray start --head` prints it) or ray://HOST:10001")
    return None


#: An HTTP/2 client's first bytes (the connection preface and an empty SETTINGS frame): a gRPC server, as every
#: Ray server is, answers with a SETTINGS frame of its own.
_HTTP2_HELLO = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])


def _first_bytes(conn: Any, timeout: float) -> bytes:
    """What a server says first to an HTTP/2 client (up to 9 bytes, a frame's header); b"" if nothing in time."""
    import socket

    conn.settimeout(timeout)
    got = b""
    try:
        conn.sendall(_HTTP2_HELLO)
        while len(got) < 9 and (chunk := conn.recv(9 - len(got))):
            got += chunk
    except (socket.timeout, OSError):
        pass
    return got


#: Where a private instance listens: this machine only.
LOOPBACK = "127.0.0.1"


@contextlib.contextmanager
def _loopback_node() -> Iterator[None]:
    """Have ``ray.init`` keep a private instance's node on the loopback address.

    Ray makes every server of a node (GCS, raylet, object manager, each worker) listen on its node
    address, and turns a loopback ``_node_ip_address`` into the machine's network address so that
    other nodes could join, unless its multi-node mode is off (as on macOS and Windows). On that
    address, anyone on the network could reach the unauthenticated instance and run code in it.
    Its multi-node switch is off for the ``ray.init`` call alone; the node keeps the address it got.
    """
    try:
        from ray._private import ray_constants
    except ImportError:  # another Ray layout: run_ray warns if the node is not on the loopback
        yield
        return
    saved = getattr(ray_constants, "ENABLE_RAY_CLUSTER", True)
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved


def _warn_if_reachable(ray: Any) -> None:
    """Warn when a private instance's node is not on the loopback (a Ray version that ignores it)."""
    try:
        address = ray.util.get_node_ip_address()
        loopback = ipaddress.ip_address(address).is_loopback
    except Exception as exc:  # not an IP address, or a Ray without the call
        log.debug("could not read the Ray node's address: %s", exc)
        return
    if not loopback:
        log.warning("the private Ray instance listens on %s: other machines on the network can reach it "
                    "(use the local engine, or a firewall)", address)


class _CaptionActor:
    """A Ray actor holding one model; never raises from ``caption`` (failures are results)."""

    def __init__(self, config: CaptionConfig, log_level: int) -> None:
        worker_logging(log_level)
        self.config = config
        self.error: str | None = None
        try:
            from ..pipeline import Captioner

            self.captioner = Captioner(config)
        except Exception as exc:
            self.error = " ".join(str(exc).split()) or type(exc).__name__

    def ready(self) -> str | None:
        return self.error

    def caption(self, job: BatchJob) -> FileResult:
        return held(run_job(self.captioner, job, self.config))


def run_ray(jobs: Sequence[BatchJob], config: CaptionConfig, *, address: str | None = None,
            workers: int | None = None, on_result: ResultCallback | None = None) -> list[FileResult]:
    """Caption ``jobs`` on a Ray cluster with ``run_job``, one model per actor.

    ``address`` is a cluster to join (``"auto"``, ``"ray://host:10001"``, ``host:6379``);
    ``None`` starts a private local instance with ``workers`` CPUs (default: all
    cores), listening on the loopback only, no dashboard, quiet logs and no usage reporting. Video and output
    paths must exist at the same absolute path on every node, and captioner must
    be installed there.

    Each actor gets ``config.threads`` CPUs (default 1; a local instance splits
    its cores between ``workers`` actors) and there are ``workers`` actors
    (default: as many as the cluster's CPUs allow). Actors are scheduled with
    ``ray.wait`` rather than ``ActorPool`` so that a result can always be tied to
    its file, even when an actor dies: that file is reported failed and the actor
    replaced.

    Raises ``CaptionerError`` when Ray is missing or the cluster cannot be
    reached, ``ModelError`` when no actor can load the model.
    """
    from ..errors import ModelError

    on_result = on_result or (lambda r: None)
    results: list[FileResult] = []
    if not jobs:
        return results
    ray = require_ray()
    config = absolute_model(config)
    own = not ray.is_initialized()
    level = logging.getLogger("captioner").getEffectiveLevel()
    cores = usable_cpus()
    local = own and not address
    per_actor = config.threads or (max(1, cores // workers) if (local and workers) else 1)
    config = replace(config, threads=per_actor)
    if own:
        ray_level = logging.WARNING if level <= logging.INFO else logging.ERROR  # Ray's notices only with -v
        quiet = dict(include_dashboard=False, logging_level=ray_level, log_to_driver=level <= logging.INFO)
        if address:
            problem = _unreachable(address)
            if problem:
                raise CaptionerError(problem)
            _token_auth_from_env()
        import signal
        import threading

        main_thread = threading.current_thread() is threading.main_thread()
        on_sigterm = signal.getsignal(signal.SIGTERM) if main_thread else None
        # Ctrl-C inside ray.init leaves the processes it has started (GCS, raylet, their agents) running
        # for a minute after the CLI exits, whatever shutdown is tried: hold it until ray.init returns
        # (a cluster joined by address starts no process here: Ctrl-C stops its retries at once, which could run
        # for minutes where the address answers but no head does)
        held: list[int] = []
        on_sigint = None  # (a process that ignores SIGINT, started with nohup or &, keeps ignoring it)
        joining = bool(address) and address != "local"  # "local" starts a private instance, as no address does
        if main_thread and not joining and signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
            on_sigint = signal.signal(signal.SIGINT, lambda signum, frame: held.append(signum))
        with native_stderr_captured("Ray said") as captured:  # Ray's C++ client writes its retries straight to fd 2
            try:
                if address:
                    ray.init(address=address, **quiet)
                else:
                    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # an offline tool: no usage reports
                    with _loopback_node():
                        ray.init(address="local", num_cpus=(workers or max(1, cores // per_actor)) * per_actor,
                                 _node_ip_address=LOOPBACK, dashboard_host=LOOPBACK, **quiet)
            except SystemExit as exc:  # ray.init's own SIGTERM handler exits; stop like our caller's would
                with contextlib.suppress(Exception):  # the agents it had started ran on for a minute
                    ray.shutdown()
                if exc.code == signal.SIGTERM:
                    raise Terminated from None
                raise
            except Exception as exc:
                raise CaptionerError(_ray_start_error(address, exc, captured())) from None
            finally:
                if main_thread and on_sigterm is not None:  # ray.init replaces the SIGTERM handler
                    signal.signal(signal.SIGTERM, on_sigterm)
                if on_sigint is not None:
                    signal.signal(signal.SIGINT, on_sigint)
        if held:  # the Ctrl-C that came while Ray started: stop now, with Ray shut down
            ray.shutdown()
            if callable(on_sigint):
                on_sigint(signal.SIGINT, None)
            raise KeyboardInterrupt
        if not address:  # after the capture of fd 2: its warning is seen
            _warn_if_reachable(ray)
    actors: list[Any] = []
    try:
        total_cpus = int(ray.cluster_resources().get("CPU", 1))
        # an actor wanting more CPUs than any node has never starts: the batch waited RAY_START_TIMEOUT_S unsaid
        most = max((int(n.get("Resources", {}).get("CPU", 0)) for n in ray.nodes() if n.get("Alive")), default=0)
        if most and config.threads > most:  # (an autoscaler could add such a node; that is rare, a 10-minute wait not)
            raise CaptionerError(f"--threads {config.threads}: no node of the Ray cluster has that many CPUs (the "
                                 f"most: {most}); each worker takes --threads CPUs (on an autoscaling cluster, start "
                                 "such a node first)")
        n_actors = max(1, min(len(jobs), workers or total_cpus // per_actor))
        actor_cls = ray.remote(_CaptionActor).options(num_cpus=config.threads, max_restarts=0)

        starting: dict[Any, Any] = {}

        def start_actor() -> None:
            actor = actor_cls.remote(config, level)
            actors.append(actor)
            starting[actor.ready.remote()] = actor

        for _ in range(n_actors):
            start_actor()
        idle: list[Any] = []
        inflight: dict[Any, tuple[BatchJob, Any]] = {}
        queue = deque(jobs)
        init_errors: list[str] = []
        while queue or inflight:
            if not (starting or idle or inflight):
                raise ModelError(f"no Ray worker could load the model: {init_errors[0] if init_errors else 'unknown'}")
            while idle and queue:
                actor = idle.pop()
                job = queue.popleft()
                inflight[actor.caption.remote(job)] = (job, actor)
            timeout = RAY_START_TIMEOUT_S if not (idle or inflight) else None
            ready, _ = ray.wait(list(starting) + list(inflight), num_returns=1, timeout=timeout)
            if not ready:
                raise CaptionerError(f"no Ray worker started within {RAY_START_TIMEOUT_S:.0f} s; does the cluster "
                                     f"have {config.threads} free CPU(s) per worker?")
            ref = ready[0]
            if ref in starting:
                actor = starting.pop(ref)
                try:
                    error = ray.get(ref)
                except Exception as exc:  # the actor died while starting
                    error = elided(" ".join(str(exc).split()), 500)
                if error:
                    init_errors.append(error)
                    log.warning("a Ray worker could not load the model: %s", error)
                else:
                    idle.append(actor)
                continue
            job, actor = inflight.pop(ref)
            try:
                result = replay(ray.get(ref))
                idle.append(actor)
            except Exception as exc:  # the actor process died on this file: report it, replace the actor
                result = crashed(job, type(exc).__name__)
                ray.kill(actor)
                start_actor()
            results.append(result)
            on_result(result)
    finally:
        for actor in actors:
            try:
                ray.kill(actor)
            except Exception:
                pass
        if own:
            ray.shutdown()
    return results
