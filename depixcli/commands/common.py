"""Helpers shared by the command modules: error translation, stop signals and common options."""

import contextlib
from collections.abc import Iterator

import click

# = faces.detect.DETECTORS and io.codec.X264_PRESETS (less "placebo"), not imported here: --help stays instant
DETECTOR_NAMES = ("yunet", "centerface", "sfd")
PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
STOP_SIGNALS = ("SIGTERM", "SIGHUP")  # handled as Ctrl-C (kill, docker stop, systemd, CI timeouts, closed terminal)
# What the user can do about an error or warning whose `advice` is the key: the CLI's wording, with its flags
ADVICE = {
    "weights": "pass --weights PATH or set DEPIX_WEIGHTS (train one with `depix train`)",  # = model.weights.WEIGHTS_ENV
    "nonempty": "choose a new one, or add --add to write into it",
    "dataset_exists": "add --add to add these clips to it (clips already in it are kept), or choose another directory",
    "add_settings": "--add needs the same settings",
    "unfinished": "rerun it with --add to finish it",
    "no_val": "one identity, or --val-fraction 0, holds none out: give a CSV with a split column",
    "models_dir": "or give that directory as --models-dir",
    "split": "use --split val",
    "seed": "restart in a new directory with another --seed",
}
SIGNAL_EXIT_BASE = 128  # exit status = 128 + signal number, as a shell reports a command stopped by a signal


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised in the main thread. A KeyboardInterrupt, so every clean-up path that
    handles Ctrl-C (temporary outputs removed, workers stopped, training checkpointed) handles it too."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def stop_signals() -> Iterator[None]:
    """Turn SIGTERM / SIGHUP into `Stopped` while the block runs (main thread only; elsewhere a no-op).

    The first signal raises; later ones are ignored, so the clean-up it starts is not cut short.
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signums = [getattr(signal, name) for name in STOP_SIGNALS if hasattr(signal, name)]

    def handle(signum, frame):
        for s in signums:
            signal.signal(s, signal.SIG_IGN)
        raise Stopped(signum)

    old = {s: signal.signal(s, handle) for s in signums}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def interrupted_exit(signum: int | None = None) -> SystemExit:
    """Print the one line of a stopped command and return the SystemExit to raise: 130 for Ctrl-C,
    143 for SIGTERM, 129 for SIGHUP."""
    import signal

    if signum is None or signum == signal.SIGINT:
        click.echo("Interrupted.", err=True)
        return SystemExit(SIGNAL_EXIT_BASE + signal.SIGINT)
    click.echo(f"Interrupted ({signal.Signals(signum).name}).", err=True)
    return SystemExit(SIGNAL_EXIT_BASE + signum)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn library errors into a one-line `Error: ...` and exit code 1 (no traceback), and library
    warnings (`DepixWarning`) into one `Warning: ...` line each on stderr, as they happen: the one warning
    channel. An `OptionError` is worded with the flag of its option (`region` -> `--region ...`).

    Ctrl-C exits 130, SIGTERM 143 and SIGHUP 129, each with one line; outputs are written atomically by
    the library, so a stopped run leaves nothing half-written behind.
    """
    import warnings

    from depixcli.errors import DepixError, DepixWarning, OptionError

    shown = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, DepixWarning):
            click.echo(f"Warning: {advised(message)}", err=True)
        else:
            shown(message, category, filename, lineno, file, line)

    with warnings.catch_warnings(), stop_signals():
        warnings.simplefilter("always", DepixWarning)
        warnings.showwarning = show
        try:
            yield
        except OptionError as exc:
            raise click.ClickException(f"{flag(exc.option)} {advised(exc)}") from None
        except DepixError as exc:
            raise click.ClickException(advised(exc)) from None
        except KeyboardInterrupt as exc:
            raise interrupted_exit(getattr(exc, "signum", None)) from None


def advised(exc: BaseException) -> str:
    """An error's or warning's message followed by its `advice` in the CLI's words (`; pass --weights ...`)."""
    advice = getattr(exc, "advice", None)
    return f"{exc}; {ADVICE[advice]}" if advice else str(exc)


def flag(option: str) -> str:
    """The command-line flag of a config field: `side_by_side` -> `--side-by-side`."""
    return "--" + option.replace("_", "-")


class TimeParam(click.ParamType):
    """A time in seconds: `90`, `1.5`, `01:30` or `00:01:30.5` ([[HH:]MM:]SS[.fraction])."""

    name = "time"

    def convert(self, value, param, ctx):
        if isinstance(value, (int, float)):
            return float(value)
        fields = str(value).strip().split(":")
        try:
            if len(fields) > 3 or any(not f for f in fields):
                raise ValueError
            seconds = 0.0
            for f in fields:
                seconds = seconds * 60 + float(f)
            if len(fields) > 1 and not all(float(f) < 60 for f in fields[1:]):
                raise ValueError
        except ValueError:
            self.fail(f"expected seconds or [HH:]MM:SS[.ms], got {value!r}", param, ctx)
        if not seconds >= 0 or seconds == float("inf"):
            self.fail(f"expected a time >= 0, got {value!r}", param, ctx)
        return seconds


def window_options(command):
    """--start, --duration, --max-frames: work on a part of the input (`make_window` builds it)."""
    command = click.option("--max-frames", type=click.IntRange(min=1), default=None,
                           help="Process at most this many frames from --start.")(command)
    command = click.option("--duration", type=TimeParam(), default=None,
                           help="Process at most this long from --start (seconds or [HH:]MM:SS[.ms]).")(command)
    return click.option("--start", type=TimeParam(), default=0.0,
                        help="Begin this far into the input (seconds or [HH:]MM:SS[.ms]); the output starts "
                             "there, at time 0, with the audio under it.")(command)


def make_window(start: float, duration: float | None, max_frames: int | None):
    """The `video.TimeWindow` of --start / --duration / --max-frames; None for the whole video."""
    if not start and duration is None and max_frames is None:
        return None
    if duration is not None and duration <= 0:
        raise click.BadParameter("must be > 0", param_hint="--duration")
    from depixcli.io.video import TimeWindow

    return TimeWindow(start_s=start, duration_s=duration, max_frames=max_frames)


def parse_region(value: str | None) -> tuple[int, int, int, int] | None:
    """`x,y,w,h` -> tuple of ints (click callback helper)."""
    if value is None:
        return None
    try:
        x, y, w, h = (int(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"expected x,y,w,h in pixels, got {value!r}") from None
    if w <= 0 or h <= 0 or x < 0 or y < 0:
        raise click.BadParameter(f"region must have x,y >= 0 and w,h > 0, got {value!r}")
    return x, y, w, h
