"""`ktransfer serve`: TF Serving's REST predict API on 127.0.0.1, asked by a real HTTP client.

The server runs in its own process (`python -m ktransfer.app.cli serve ...`);
this test process is the client (`http.client`, every request with a
timeout). The server stops by itself after a fixed number of requests.
"""

import http.client
import json
import os
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

import ktransfer as kt
from conftest import REPO
from ktransfer.app.serve import MAX_BODY_BYTES

TEXTS = ["a great film", "awful and boring"]


@pytest.fixture(scope="module")
def exported(tiny_preset, tmp_path_factory):
    """A tiny classifier exported as versions 1 and 3 (3 must be served)."""
    keras.utils.set_random_seed(3)
    encoder = kt.encoders.BertEncoder.from_preset(tiny_preset, sequence_length=16, pooling="mean")
    model = keras.Sequential([encoder, kt.heads.ClassificationHead(2)])
    base = tmp_path_factory.mktemp("saved_models") / "tiny"
    kt.export.save(model, str(base / "3"), labels=["neg", "pos"])
    os.makedirs(base / "1")  # an older version (never loaded: only the highest is served)
    (base / "1" / "saved_model.pb").write_bytes(b"")
    logits = np.asarray(model(encoder.preprocessor(TEXTS), training=False))
    expected = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    return str(base), expected


def _request(port, method, path, body=None, raw=None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        headers = {"Content-Type": "application/json"} if data is not None else {}
        connection.request(method, path, body=data, headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read().decode())
    finally:
        connection.close()


REQUESTS = 13

# The `ktransfer` command (`python -m ktransfer.app.cli` warns: the package aliases that module).
PROBE = "import sys; import ktransfer.app.cli as cli; sys.exit(cli.main(sys.argv[1:]))"


def test_serve_answers_tf_servings_rest_api_from_another_process(exported):
    base, expected = exported
    server = subprocess.Popen(
        [sys.executable, "-c", PROBE, "serve", base, "--port", "0",
         "--max-requests", str(REQUESTS), "--idle-timeout", "120"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )
    try:
        line = server.stdout.readline()  # printed once the model is loaded and the port bound
        assert line.startswith("Serving tiny version 3 "), server.stderr.read()[-3000:]
        url = line.split(" at ", 1)[1].split()[0]
        assert url.startswith("http://127.0.0.1:")  # loopback only
        port = int(url.split(":")[2].split("/")[0])
        model = "/v1/models/tiny"

        status, body = _request(port, "GET", model)
        assert status == 200
        assert body == {"model_version_status": [{"version": "3", "state": "AVAILABLE",
                                                  "status": {"error_code": "OK", "error_message": ""}}]}

        status, body = _request(port, "POST", f"{model}:predict", {"instances": TEXTS})
        assert status == 200 and [p["label"] for p in body["predictions"]] == [
            ["neg", "pos"][i] for i in expected.argmax(-1)]
        np.testing.assert_allclose([p["probabilities"] for p in body["predictions"]], expected,
                                   atol=1e-5)

        status, body = _request(port, "POST", f"{model}/versions/3:predict", {"inputs": TEXTS})
        assert status == 200 and set(body["outputs"]) == {"label", "probabilities"}
        np.testing.assert_allclose(body["outputs"]["probabilities"], expected, atol=1e-5)

        status, body = _request(port, "POST", f"{model}:predict",
                                {"instances": [{"b64": "YSBncmVhdCBmaWxt"}]})  # "a great film"
        assert status == 200
        np.testing.assert_allclose(body["predictions"][0]["probabilities"], expected[0], atol=1e-5)

        status, body = _request(port, "POST", f"{model}:predict", {"instances": []})
        assert (status, body) == (200, {"predictions": []})

        # Rejected with TF Serving's error shape: a scalar, a 2-D batch, bad JSON, wrong names.
        status, body = _request(port, "POST", f"{model}:predict", {"inputs": "a great film"})
        assert status == 400 and "expected a 1-D batch of strings" in body["error"]
        assert "got shape []" in body["error"]
        status, body = _request(port, "POST", f"{model}:predict", {"instances": [TEXTS]})
        assert status == 400 and "got shape [1, 2]" in body["error"]
        status, body = _request(port, "POST", f"{model}:predict", raw=b'{"instances": [')
        assert status == 400 and body["error"].startswith("JSON Parse error")
        status, body = _request(port, "POST", "/v1/models/other:predict", {"instances": TEXTS})
        assert (status, body) == (404, {"error": "Servable not found for request: Latest(other)"})
        status, body = _request(port, "GET", f"{model}/versions/1")
        assert status == 404  # only the highest version is served, as TF Serving does

        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        connection.putrequest("POST", f"{model}:predict")
        connection.putheader("Content-Length", str(MAX_BODY_BYTES + 1))
        connection.endheaders()  # the body is refused before it is read
        response = connection.getresponse()
        assert response.status == 413 and "error" in json.loads(response.read())
        connection.close()

        status, body = _request(port, "GET", f"{model}/metadata")
        signature = body["metadata"]["signature_def"]["signature_def"]["serving_default"]
        assert status == 200 and signature["inputs"]["text"]["dtype"] == "DT_STRING"
        assert signature["outputs"]["probabilities"]["dtype"] == "DT_FLOAT"

        assert _request(port, "POST", f"{model}:predict", {"instances": ["x"]})[0] == 200
        # That was request number REQUESTS: the server stops by itself.
        deadline = time.time() + 60
        while server.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        assert server.returncode == 0
    finally:
        if server.poll() is None:
            server.kill()
        _, err = server.communicate(timeout=60)
    # The runtime's start-up noise (`failed call to cuInit ... (303)` on a machine without
    # a GPU) is filtered; what `import ktransfer` prints before the command runs is not.
    assert "failed call to cuInit" not in err
    assert sum(' "POST /v1/models/' in line for line in err.splitlines()) == REQUESTS - 3


def test_serve_refuses_a_folder_without_an_export(tmp_path, capsys):
    from ktransfer.app.cli import main

    assert main(["serve", str(tmp_path)]) == 2
    assert "has no version folder with a saved_model.pb" in capsys.readouterr().err
    from ktransfer.app.serve import build_parser

    options = {option for action in build_parser()._actions for option in action.option_strings}
    assert "--host" not in options  # loopback only, by design
