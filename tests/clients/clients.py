"""vigil through the clients people already have, as a new user would call it.

- tritonclient (gRPC): the Open Inference Protocol v2 endpoints of the predictor: liveness,
  readiness, model metadata, inference on several rows read with `as_numpy`, a bad row refused.
- grpcio-health-checking: `grpc.health.v1.Health/Check` for the server and its services.
- nats-py: one JSON signal published to an ingest subject with `Content-Type: application/json`,
  stored by JetStream.

Run by tests/e2e/clients.rs against `vigil up`, which then waits for the published signal's
workflow. Prints one line per check; the first failed check raises, so the exit code is not 0.

    python clients.py --grpc 127.0.0.1:50051 --nats nats://127.0.0.1:4222 \
        --subject vigil.ingest.python --signal-id py-1
"""

import argparse
import asyncio
import json

import grpc
import numpy as np
import tritonclient.grpc as triton
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.utils import InferenceServerException

OUTPUTS = ["risk_score", "confidence", "risk_level", "coverage", "abstention"]
LEVELS = {b"low", b"medium", b"high", b"critical"}

ROWS = [
    {"id": "row-1", "threatType": "port_scan", "sourceIp": "203.0.113.7", "destinationPort": 22,
     "protocol": "tcp", "confidence": 0.9},
    {"id": "row-2", "type": "suspicious_traffic", "port": 8080, "confidence": 0.4,
     "severity": "low"},
    {"id": "row-3", "threatType": "neptune", "protocol": "tcp", "destinationPort": 80,
     "confidence": 0.7, "bytes": "0", "packets": "200", "durationSeconds": 0.5},
]


def check(condition, what):
    if not condition:
        raise AssertionError(what)
    print(f"ok: {what}", flush=True)


def level_of(score, critical=9.0, high=7.0, medium=4.0):
    """The risk level a score falls in under the default thresholds."""
    if score >= critical:
        return b"critical"
    if score >= high:
        return b"high"
    if score >= medium:
        return b"medium"
    return b"low"


def infer(client, model, rows, outputs=None):
    data = np.array([r if isinstance(r, bytes) else json.dumps(r).encode() for r in rows],
                    dtype=np.object_)
    signals = triton.InferInput("signals", [len(rows)], "BYTES")
    signals.set_data_from_numpy(data)
    requested = [triton.InferRequestedOutput(name) for name in outputs] if outputs else None
    return client.infer(model, [signals], outputs=requested, request_id="clients-py")


def oip(address, model, expected=None):
    client = triton.InferenceServerClient(url=address)
    check(client.is_server_live(), "tritonclient: is_server_live")
    check(client.is_server_ready(), "tritonclient: is_server_ready")
    check(client.is_model_ready(model), f"tritonclient: is_model_ready({model!r})")

    index = client.get_model_repository_index(as_json=True)
    check([(m["name"], m["state"]) for m in index["models"]] == [(model, "READY")],
          f"tritonclient: the repository index lists {model} READY: {index}")

    server = client.get_server_metadata(as_json=True)
    check(server["name"] == "vigil-predictor", f"tritonclient: server metadata {server}")

    meta = client.get_model_metadata(model, as_json=True)
    check(meta["name"] == model and meta["versions"], f"tritonclient: model metadata names {model}")
    check([(i["name"], i["datatype"], i["shape"]) for i in meta["inputs"]]
          == [("signals", "BYTES", ["-1"])],
          f"tritonclient: one BYTES input 'signals' of shape [-1]: {meta['inputs']}")
    check([o["name"] for o in meta["outputs"]] == OUTPUTS,
          f"tritonclient: outputs {OUTPUTS}")

    result = infer(client, model, ROWS)
    n = len(ROWS)
    response = result.get_response(as_json=True)
    check(response["model_name"] == model and response["id"] == "clients-py",
          "tritonclient: the answer names the model and echoes the request id")
    scores = result.as_numpy("risk_score")
    confidence = result.as_numpy("confidence")
    levels = result.as_numpy("risk_level")
    coverage = result.as_numpy("coverage")
    abstention = result.as_numpy("abstention")
    check(scores.dtype == np.float64 and scores.shape == (n,),
          f"tritonclient: as_numpy('risk_score') is float64 of shape ({n},): {scores}")
    check(confidence.shape == (n,) and coverage.shape == (n,) and abstention.shape == (n,),
          "tritonclient: as_numpy of confidence, coverage, abstention, one value per row")
    check(bool(np.all((scores >= 0) & (scores <= 10))), f"risk scores within 0-10: {scores}")
    check(bool(np.all((confidence >= 0) & (confidence <= 1))), f"confidence within 0-1: {confidence}")
    check(bool(np.all((coverage >= 0) & (coverage <= 1))), f"coverage within 0-1: {coverage}")
    check(set(levels.tolist()) <= LEVELS, f"risk levels are level names: {levels}")
    check([level_of(s) for s in scores] == levels.tolist(),
          f"each risk level is its score's under the default thresholds: {scores} {levels}")
    check(set(abstention.tolist()) <= {b"", b"low_coverage"},
          f"abstention is empty or a reason: {abstention}")

    # Rows answer alone as they answer together, and only the outputs asked for come back.
    one = infer(client, model, ROWS[:1], outputs=["risk_score", "risk_level"])
    check(one.as_numpy("risk_score").tolist() == scores[:1].tolist(),
          "tritonclient: a row scores the same alone as in a batch")
    check(one.as_numpy("confidence") is None and one.as_numpy("risk_level").shape == (1,),
          "tritonclient: only the requested outputs are answered")

    if expected:
        # Rows scored by vigil's own typed API beforehand: as_numpy reads the same numbers.
        rows = expected["rows"]
        result = infer(client, model, rows)
        check(result.as_numpy("risk_score").tolist() == expected["risk_score"],
              f"tritonclient: {len(rows)} records score as vigil's own client scored them: "
              f"{result.as_numpy('risk_score')}")
        check(result.as_numpy("confidence").tolist() == expected["confidence"],
              "tritonclient: and with the same confidence")
        check(set(result.as_numpy("abstention").tolist()) == {b""},
              "the model scored them (no abstention: the records carry its inputs)")

    bad = [ROWS[0], b'{"confidence": "high"']
    try:
        infer(client, model, bad)
    except InferenceServerException as err:
        check(err.status() == "StatusCode.INVALID_ARGUMENT",
              f"tritonclient: a bad row is refused with INVALID_ARGUMENT ({err.status()})")
        check("signals[1]" in err.message(), f"the refusal names the row: {err.message()}")
    else:
        raise AssertionError("a bad JSON row was scored instead of refused")

    try:
        client.get_model_metadata("no-such-model")
    except InferenceServerException as err:
        check(err.status() == "StatusCode.NOT_FOUND", "tritonclient: an unknown model is NOT_FOUND")
    else:
        raise AssertionError("metadata of an unknown model was answered")
    client.close()


def health(address):
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ["", "inference.GRPCInferenceService", "vigil.v1.Predictor"]:
            status = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status
            check(status == health_pb2.HealthCheckResponse.SERVING,
                  f"grpc.health.v1: Check({service!r}) is SERVING")
        try:
            stub.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=10)
        except grpc.RpcError as err:
            check(err.code() == grpc.StatusCode.NOT_FOUND,
                  "grpc.health.v1: an unknown service is NOT_FOUND")
        else:
            raise AssertionError("health of an unknown service was answered")


async def publish(url, subject, signal_id):
    import nats

    nc = await nats.connect(url, name="vigil-clients-test")
    try:
        js = nc.jetstream()
        signal = {"id": signal_id, "type": "port_scan", "sourceIp": "198.51.100.23", "port": 22,
                  "protocol": "tcp", "confidence": 0.8, "severity": "high"}
        ack = await js.publish(subject, json.dumps(signal).encode(),
                               headers={"Content-Type": "application/json"}, timeout=10)
        check(ack.stream.endswith("VIGIL_INGEST") and ack.seq > 0,
              f"nats-py: a JSON signal on {subject} is stored in {ack.stream} (seq {ack.seq})")
    finally:
        await nc.drain()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grpc", required=True, help="the predictor's gRPC address, HOST:PORT")
    parser.add_argument("--model", default="vigil-threat")
    parser.add_argument("--nats", required=True, help="NATS URL")
    parser.add_argument("--subject", required=True, help="the ingest subject to publish on")
    parser.add_argument("--signal-id", required=True)
    parser.add_argument("--expected", help="JSON file: rows and the scores vigil's own client gave")
    args = parser.parse_args()
    expected = None
    if args.expected:
        with open(args.expected) as f:
            expected = json.load(f)
    oip(args.grpc, args.model, expected)
    health(args.grpc)
    asyncio.run(publish(args.nats, args.subject, args.signal_id))
    print("all checks passed", flush=True)


if __name__ == "__main__":
    main()
