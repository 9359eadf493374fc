"""`ktransfer serve saved_models/NAME`: TF Serving's REST API on 127.0.0.1, for local checks.

A small HTTP server (Python's `http.server`, one request at a time) that
loads the highest version of an exported SavedModel and answers the part of
TensorFlow Serving's REST API a client uses, so code written against TF
Serving can be tried without Docker:

- `GET  /v1/models/NAME` (and `/versions/N`): the version status;
- `GET  /v1/models/NAME/metadata`: the signatures' inputs and outputs;
- `POST /v1/models/NAME:predict` (and `/versions/N:predict`) with
  `{"instances": [...]}` (row format) or `{"inputs": ...}` (columnar), an
  optional `"signature_name"`; answers `{"predictions": [...]}` or
  `{"outputs": ...}`, and errors as `{"error": "..."}` with HTTP 400 (bad
  request), 404 (unknown model, version or path), 411/413 (body missing or
  too large).

It listens on the loopback interface only (never on a network), reads at
most `MAX_BODY_BYTES` per request, drops a client that stalls for
`REQUEST_TIMEOUT_S`, and can stop by itself (`--max-requests`,
`--idle-timeout`). Each input is checked against its signature's
`TensorSpec` before the model runs: a scalar or a 2-D batch where the
signature takes a 1-D batch of strings is a 400 with the expected shape.
For production use TF Serving itself (docs/operations.md).

```python
# not run: needs an export in saved_models/sst2 and answers requests until stopped
from ktransfer.app.serve import make_server
server = make_server("saved_models/sst2", port=0)    # 0: any free port
server.url                                           # http://127.0.0.1:PORT/v1/models/sst2
server.serve(max_requests=10, idle_timeout=60)
```
"""

import argparse
import base64
import http.server
import json
import os
import re
import sys
import time

HOST = "127.0.0.1"
DEFAULT_PORT = 8501  # TF Serving's REST port
MAX_BODY_BYTES = 16 * 1024 * 1024
REQUEST_TIMEOUT_S = 30


class RequestError(Exception):
    """A request the server answers with `{"error": message}` and `status`."""

    def __init__(self, message, status=400):
        super().__init__(message)
        self.status = status


def find_version(path):
    """`(name, version, folder)` of the SavedModel to serve under `path`.

    `path` is a model base folder (`saved_models/NAME`, holding numbered
    version folders: the highest is served, as TF Serving does) or one
    version folder (`saved_models/NAME/3`).
    """
    path = os.path.abspath(os.fspath(path))
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        version = os.path.basename(path)
        if not version.isdigit():
            raise ValueError(
                f"{path} holds a SavedModel but is not a numbered version folder; "
                "TF Serving's layout is saved_models/NAME/VERSION/saved_model.pb."
            )
        return os.path.basename(os.path.dirname(path)), int(version), path
    if not os.path.isdir(path):
        raise FileNotFoundError(
            f"{path} does not exist: pass an export folder, e.g. saved_models/NAME "
            "(`ktransfer export RUN_DIR` or kt.train's export section writes one)."
        )
    versions = sorted(
        int(name) for name in os.listdir(path)
        if name.isdigit() and os.path.isfile(os.path.join(path, name, "saved_model.pb"))
    )
    if not versions:
        raise FileNotFoundError(
            f"{path} has no version folder with a saved_model.pb (expected "
            f"{path}/1/saved_model.pb): export a model there first."
        )
    return os.path.basename(path), versions[-1], os.path.join(path, str(versions[-1]))


class Servable:
    """A loaded SavedModel version and the REST conversions of its signatures."""

    def __init__(self, folder, name, version):
        from ktransfer.app.quiet import quiet_tensorflow

        tf = quiet_tensorflow()
        try:
            import tensorflow_text  # noqa: F401  registers the tokenizer ops
        except ImportError:
            pass
        self.tf = tf
        self.name = name
        self.version = version
        self.folder = folder
        self.loaded = tf.saved_model.load(folder)
        self.signatures = dict(self.loaded.signatures)
        if not self.signatures:
            raise ValueError(f"{folder} has no serving signatures.")

    def signature(self, name):
        name = name or "serving_default"
        if name not in self.signatures:
            raise RequestError(
                f"Serving signature name: \"{name}\" not found in signature def; "
                f"the model has {sorted(self.signatures)}."
            )
        function = self.signatures[name]
        specs = function.structured_input_signature[1]
        return function, dict(sorted(specs.items()))

    def metadata(self):
        signature_def = {}
        for name in sorted(self.signatures):
            function, specs = self.signature(name)
            outputs = function.structured_outputs
            signature_def[name] = {
                "inputs": {key: _spec_info(spec) for key, spec in specs.items()},
                "outputs": {key: _spec_info(value) for key, value in sorted(outputs.items())},
                "method_name": "tensorflow/serving/predict",
            }
        return {
            "model_spec": {"name": self.name, "signature_name": "", "version": str(self.version)},
            "metadata": {"signature_def": {"signature_def": signature_def}},
        }

    def predict(self, body):
        if not isinstance(body, dict):
            raise RequestError('The request body must be a JSON object with "instances" or "inputs".')
        if ("instances" in body) == ("inputs" in body):
            raise RequestError('Give exactly one of "instances" (row format) or "inputs" (columnar).')
        function, specs = self.signature(body.get("signature_name"))
        if "instances" in body:
            tensors = self._row_inputs(body["instances"], specs)
        else:
            tensors = self._columnar_inputs(body["inputs"], specs)
        try:
            outputs = function(**tensors)
        except (self.tf.errors.InvalidArgumentError, ValueError, TypeError) as error:
            raise RequestError(_first_line(error)) from None
        outputs = {key: _to_json(value.numpy()) for key, value in sorted(outputs.items())}
        if "inputs" in body:
            if len(outputs) == 1:
                return {"outputs": next(iter(outputs.values()))}
            return {"outputs": outputs}
        sizes = {key: len(value) if isinstance(value, list) else None for key, value in outputs.items()}
        if len(set(sizes.values())) != 1 or None in sizes.values():
            raise RequestError(
                f"The outputs have different batch sizes {sizes}; use the columnar format "
                '({"inputs": ...}).'
            )
        if len(outputs) == 1:
            return {"predictions": next(iter(outputs.values()))}
        count = next(iter(sizes.values()))
        return {"predictions": [{key: value[i] for key, value in outputs.items()} for i in range(count)]}

    def _row_inputs(self, instances, specs):
        if not isinstance(instances, list):
            raise RequestError('"instances" must be a list, one entry per example: '
                               '{"instances": ["first text", "second text"]}.')
        names = list(specs)
        if len(names) == 1 and not (instances and all(isinstance(i, dict) and "b64" not in i
                                                       for i in instances)):
            columns = {names[0]: instances}
        else:
            columns = {name: [] for name in names}
            for index, instance in enumerate(instances):
                if not isinstance(instance, dict) or set(instance) != set(names):
                    raise RequestError(
                        f"instances[{index}] must be an object with the inputs {names}, got "
                        f"{_short(instance)}."
                    )
                for name in names:
                    columns[name].append(instance[name])
        return {name: self._tensor(name, values, specs[name]) for name, values in columns.items()}

    def _columnar_inputs(self, inputs, specs):
        names = list(specs)
        if isinstance(inputs, dict) and "b64" not in inputs:
            if set(inputs) != set(names):
                raise RequestError(f'"inputs" must name the inputs {names}, got {sorted(inputs)}.')
            columns = inputs
        elif len(names) == 1:
            columns = {names[0]: inputs}
        else:
            raise RequestError(f'"inputs" must be an object with the inputs {names}.')
        return {name: self._tensor(name, columns[name], specs[name]) for name in names}

    def _tensor(self, name, values, spec):
        import numpy as np

        tf = self.tf
        try:
            if spec.dtype == tf.string:
                array = np.array(_to_bytes(values), dtype=object)
                if array.dtype != object or any(not isinstance(v, bytes) for v in array.reshape(-1)):
                    raise ValueError("ragged")
            else:
                array = np.asarray(values, dtype=spec.dtype.as_numpy_dtype)
        except (ValueError, TypeError):
            raise RequestError(
                f"input '{name}': expected {_describe(spec)}, got {_short(values)} "
                "(not a list of that type, or lists of unequal lengths)."
            ) from None
        if spec.shape.rank is not None and array.ndim != spec.shape.rank:
            raise RequestError(
                f"input '{name}': expected {_describe(spec)}, got shape {list(array.shape)}"
                + (" (a single value: wrap it in a list)" if array.ndim == 0 else "")
                + (" (one list per example: send the texts themselves, "
                   '{"instances": ["first text", "second text"]})' if array.ndim > spec.shape.rank
                   else "")
                + "."
            )
        if not spec.shape.is_compatible_with(array.shape):
            raise RequestError(f"input '{name}': expected {_describe(spec)}, got shape {list(array.shape)}.")
        return tf.constant(array, dtype=spec.dtype)


def _describe(spec):
    shape = ["batch" if d is None else d for d in spec.shape.as_list()] if spec.shape.rank is not None else "any"
    what = "strings" if spec.dtype.name == "string" else spec.dtype.name
    if spec.shape.rank == 1:
        return f"a 1-D batch of {what} (shape [batch])"
    return f"{what} of shape {shape}"


def _spec_info(spec):
    shape = spec.shape
    dims = [] if shape.rank is None else [{"size": str(-1 if d is None else d)} for d in shape.as_list()]
    from tensorflow.core.framework import types_pb2

    dtype = types_pb2.DataType.Name(spec.dtype.as_datatype_enum)
    return {"dtype": dtype, "tensor_shape": {"dim": dims,
            "unknown_rank": shape.rank is None}, "name": getattr(spec, "name", None) or ""}


def _to_bytes(values):
    if isinstance(values, list):
        return [_to_bytes(v) for v in values]
    if isinstance(values, dict) and set(values) == {"b64"}:
        try:
            return base64.b64decode(values["b64"], validate=True)
        except (ValueError, TypeError):
            raise RequestError('A {"b64": ...} value is not valid base64.') from None
    if isinstance(values, str):
        return values.encode("utf-8")
    raise TypeError(type(values).__name__)


def _to_json(value):
    import numpy as np

    if isinstance(value, np.ndarray):
        if value.dtype == object or value.dtype.kind == "S":
            return [_to_json(v) for v in value] if value.ndim else _to_json(value.item())
        return value.tolist()
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return {"b64": base64.b64encode(value).decode("ascii")}
    if isinstance(value, np.generic):
        return value.item()
    return value


def _short(value, limit=80):
    text = json.dumps(value) if not isinstance(value, bytes) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _first_line(error):
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:500]


class ServingServer(http.server.HTTPServer):
    """The HTTP server; `serve()` handles requests until a stop condition."""

    def __init__(self, servable, port=DEFAULT_PORT):
        self.servable = servable
        self.requests_handled = 0
        super().__init__((HOST, port), _Handler)

    @property
    def port(self):
        return self.server_address[1]

    @property
    def url(self):
        return f"http://{HOST}:{self.port}/v1/models/{self.servable.name}"

    def serve(self, max_requests=None, idle_timeout=None):
        """Answer requests until `max_requests` were answered or none came for `idle_timeout` s."""
        self.timeout = 0.5
        last = time.monotonic()
        try:
            while max_requests is None or self.requests_handled < max_requests:
                before = self.requests_handled
                self.handle_request()
                if self.requests_handled != before:
                    last = time.monotonic()
                elif idle_timeout is not None and time.monotonic() - last > idle_timeout:
                    break
        except KeyboardInterrupt:
            pass
        finally:
            self.server_close()


class _Handler(http.server.BaseHTTPRequestHandler):
    server_version = "ktransfer-serve"
    protocol_version = "HTTP/1.0"
    timeout = REQUEST_TIMEOUT_S  # a stalled client is dropped

    def log_message(self, format, *args):  # noqa: A002  one short line per request
        sys.stderr.write(f"{self.address_string()} {format % args}\n")

    def _answer(self, status, body):
        data = json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.server.requests_handled += 1

    def _route(self, method):
        servable = self.server.servable
        path = self.path.split("?", 1)[0].rstrip("/")
        prefix = f"/v1/models/{servable.name}"
        rest = path[len(prefix):] if path.startswith(prefix) else None
        if rest is None or (rest and rest[0] not in "/:"):
            name = path[len("/v1/models/"):].split("/")[0].split(":")[0] if path.startswith("/v1/models/") else ""
            if name:
                raise RequestError(f"Servable not found for request: Latest({name})", 404)
            raise RequestError(f"Malformed request: {method} {self.path}", 404)
        match = re.match(r"^/versions/([^/:]+)(.*)$", rest)
        if match:
            version, rest = match.groups()
            if version != str(servable.version):
                raise RequestError(
                    f"Servable not found for request: Specific({servable.name}, {version})", 404)
        return rest

    def do_GET(self):  # noqa: N802
        try:
            rest = self._route("GET")
            servable = self.server.servable
            if rest == "":
                self._answer(200, {"model_version_status": [{
                    "version": str(servable.version), "state": "AVAILABLE",
                    "status": {"error_code": "OK", "error_message": ""}}]})
            elif rest == "/metadata":
                self._answer(200, servable.metadata())
            else:
                raise RequestError(f"Malformed request: GET {self.path}", 404)
        except RequestError as error:
            self._answer(error.status, {"error": str(error)})

    def do_POST(self):  # noqa: N802
        try:
            rest = self._route("POST")
            if rest in (":classify", ":regress"):
                raise RequestError(f"{rest[1:]} is not served here: use :predict.")
            if rest != ":predict":
                raise RequestError(f"Malformed request: POST {self.path}", 404)
            length = self.headers.get("Content-Length")
            if length is None or not length.isdigit():
                raise RequestError("A Content-Length header is required.", 411)
            if int(length) > MAX_BODY_BYTES:
                raise RequestError(f"The request body is over {MAX_BODY_BYTES} bytes.", 413)
            raw = self.rfile.read(int(length))
            try:
                body = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError) as error:
                raise RequestError(f"JSON Parse error: {error}") from None
            self._answer(200, self.server.servable.predict(body))
        except RequestError as error:
            if error.status in (411, 413):
                self.close_connection = True
            self._answer(error.status, {"error": str(error)})
        except Exception as error:  # noqa: BLE001  the server keeps running
            self._answer(500, {"error": f"{type(error).__name__}: {_first_line(error)}"})


def make_server(path, port=DEFAULT_PORT, model_name=None):
    """Load the highest version under `path` and bind a server on 127.0.0.1:`port`."""
    name, version, folder = find_version(path)
    servable = Servable(folder, model_name or name, version)
    return ServingServer(servable, port=port)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="ktransfer serve",
        description=(
            "Serve an exported SavedModel with TF Serving's REST API on 127.0.0.1 "
            "(loopback only), for local checks: POST /v1/models/NAME:predict with "
            '{"instances": ["a text", ...]} or {"inputs": ...}; GET /v1/models/NAME.'
        ),
    )
    parser.add_argument("path", help="saved_models/NAME (the highest version is served) or a version folder")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"port on 127.0.0.1 (default {DEFAULT_PORT}, TF Serving's; 0: any free port)")
    parser.add_argument("--model-name", help="the NAME in the URLs (default: the folder's name)")
    parser.add_argument("--max-requests", type=int, help="stop after answering this many requests")
    parser.add_argument("--idle-timeout", type=float,
                        help="stop after this many seconds without a request")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        server = make_server(args.path, port=args.port, model_name=args.model_name)
    except (FileNotFoundError, ValueError) as error:
        print(error, file=sys.stderr)
        return 2
    except OSError as error:  # the port is taken
        print(f"Cannot listen on {HOST}:{args.port}: {error}", file=sys.stderr)
        return 2
    servable = server.servable
    print(f"Serving {servable.name} version {servable.version} ({servable.folder}) at "
          f"{server.url}  (POST {server.url}:predict)", flush=True)
    server.serve(max_requests=args.max_requests, idle_timeout=args.idle_timeout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
