"""A Model is inspected and verified; only a Ready model gets replicas."""

from pathlib import Path

from .helpers import QUICKSTART_DIGEST, Plane, condition, endpoint, model


async def test_quickstart_model_is_verified_and_described(plane: Plane):
    await plane.apply(model("small", digest=QUICKSTART_DIGEST))
    ready = await plane.wait_for("Model", "small", lambda m: condition(m, "Ready") == "True")
    assert condition(ready, "Verified") == "True"
    status = ready["status"]
    assert status["digest"] == QUICKSTART_DIGEST
    assert status["metadata"]["architecture"] == "llama"
    assert status["metadata"]["blockCount"] == 30
    assert status["observedGeneration"] == ready["metadata"]["generation"]


async def test_unpinned_model_is_served_but_unverified(plane: Plane):
    await plane.apply(model("small"))
    ready = await plane.wait_for("Model", "small", lambda m: condition(m, "Ready") == "True")
    assert condition(ready, "Verified") == "Unknown"
    verified = next(c for c in ready["status"]["conditions"] if c["type"] == "Verified")
    assert verified["reason"] == "NoDigestPinned"
    assert ready["status"]["digest"] in verified["message"]


async def test_digest_mismatch_is_never_served(plane: Plane):
    wrong = "sha256:" + "0" * 64
    await plane.apply(model("small", digest=wrong), endpoint("chat", ("small", 100)))
    refused = await plane.wait_for("Model", "small", lambda m: condition(m, "Verified") == "False")
    assert condition(refused, "Ready") == "False"
    chat = await plane.wait_for(
        "Endpoint", "chat", lambda e: condition(e, "ModelsReady") == "False"
    )
    assert "DigestMismatch" in next(
        c["message"] for c in chat["status"]["conditions"] if c["type"] == "ModelsReady"
    )
    assert chat["status"]["replicas"] == []
    assert plane.supervisor.statuses() == []


async def test_non_gguf_file_is_a_clear_condition(plane: Plane, tmp_path: Path):
    bogus = tmp_path / "weights.gguf"
    bogus.write_bytes(b"definitely not a model" * 100)
    await plane.apply(model("bogus", source=f"file://{bogus}"))
    failed = await plane.wait_for("Model", "bogus", lambda m: condition(m, "Resolved") == "False")
    resolved = next(c for c in failed["status"]["conditions"] if c["type"] == "Resolved")
    assert resolved["reason"] == "NotGGUF"
    assert str(bogus) in resolved["message"]


async def test_missing_package_is_a_clear_condition(plane: Plane):
    await plane.apply(model("gone", source="pkg://no_such_package_here/model.gguf"))
    failed = await plane.wait_for("Model", "gone", lambda m: condition(m, "Ready") == "False")
    resolved = next(c for c in failed["status"]["conditions"] if c["type"] == "Resolved")
    assert resolved["reason"] == "SourceNotFound"
    assert "no_such_package_here" in resolved["message"]
