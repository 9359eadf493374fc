"""Quiet TensorFlow's start-up noise in the `ktransfer` commands.

TensorFlow prints about ten lines when it starts (`oneDNN custom operations
are on`, `Could not find cuda drivers`, `failed call to cuInit ... (303)` on
a machine without a GPU, `This TensorFlow binary is optimized to use ...`),
most of them from C++ before its logging is set up, so no environment
variable silences them. `quiet_tensorflow()` sets `TF_CPP_MIN_LOG_LEVEL`
(unless the user set it) and absl's verbosity before TensorFlow is
imported, then imports it (and lists its devices, where the CUDA probe
happens) with the process's stderr caught; afterwards every caught line is
written back except the known start-up noise. It also hides Keras'
`shuffle=True was passed, but will be ignored` warning, which ktransfer's
own `fit` calls on prepared datasets cause.

Set `TF_CPP_MIN_LOG_LEVEL=0` to see everything again.
"""

import contextlib
import os
import re
import sys
import tempfile
import threading
import warnings

NOISE = re.compile(
    "|".join([
        r"All log messages before absl::InitializeLog\(\) is called are written to STDERR",
        r"oneDNN custom operations are on",
        r"Could not find cuda drivers on your machine",
        r"failed call to cuInit",
        r"This TensorFlow binary is optimized to use available CPU instructions",
        r"To enable the following instructions: .* rebuild TensorFlow",
        r"Unable to register cu(DNN|FFT|BLAS) factory",
        r"computation placer already registered",
        r"TF-TRT Warning: Could not find TensorRT",
        r"oneDNN supports DT_\w+ only on platforms with AVX-512",
        r"cuda_executor\.cc:\d+\] could not open file to read NUMA node",
    ])
)

SHUFFLE_WARNING = r".*`shuffle=True` was passed, but will be ignored"


def is_noise(line):
    """Whether a stderr line is TensorFlow start-up noise."""
    return bool(NOISE.search(line))


@contextlib.contextmanager
def filtered_stderr():
    """Catch what is written to file descriptor 2; write it back without the noise."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no real stderr (embedded, closed)
        yield
        return
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            try:
                sys.stderr.flush()
            except (OSError, ValueError):
                pass
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            text = caught.read().decode("utf-8", errors="replace")
            kept = [line for line in text.splitlines(keepends=True) if not is_noise(line)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


@contextlib.contextmanager
def live_filtered_stderr():
    """Filter file descriptor 2 line by line while the block runs (for a whole command).

    TensorFlow logs some noise only once it computes (`oneDNN supports DT_INT64
    only on platforms with AVX-512`); a pipe and a thread pass every other line
    on as soon as it is complete, so warnings and errors still show when they
    happen.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield
        return
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    def pump():
        pending = b""
        while True:
            try:
                chunk = os.read(read_end, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            kept = [line + b"\n" for line in lines if not is_noise(line.decode("utf-8", "replace"))]
            if kept:
                os.write(saved, b"".join(kept))
        if pending and not is_noise(pending.decode("utf-8", "replace")):
            os.write(saved, pending)
        os.close(read_end)

    thread = threading.Thread(target=pump, name="ktransfer-stderr-filter", daemon=True)
    thread.start()
    try:
        yield
    finally:
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(saved, 2)  # closes the pipe's last write end: the pump sees the end
        thread.join(timeout=5)
        os.close(saved)


def quiet_tensorflow():
    """Import TensorFlow without its start-up noise (see the module docstring)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    warnings.filterwarnings("ignore", message=SHUFFLE_WARNING, category=UserWarning)
    try:
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)
    except ImportError:
        pass
    with filtered_stderr():  # (when `import ktransfer` already imported TensorFlow, this
        import tensorflow as tf  # still catches the runtime start and its CUDA probe)

        tf.config.list_logical_devices()  # starts the runtime: the CUDA probe (cuInit)
    tf.get_logger().setLevel("ERROR")
    return tf
