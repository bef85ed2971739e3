"""Transport security and the deadline reply's CPU priority, end to end on real servers.

- TLS and mutual TLS: certificates made here with the openssl command line (a test CA, a server
  certificate for 127.0.0.1, a client certificate from the same CA and one from a foreign CA); both servers
  must serve a client that presents what they require and refuse one that does not.
- The C++ server runs TensorFlow's threads at ``--inference_nice`` so the threads answering RPCs (and so
  the REJECT_INCOMPLETE at a deadline) get a core while inference holds them all (docs/serving.md).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import grpc
import pytest
from serving_testutils import MODEL, product_layout, start_server_of_kind

from tfad.serving.client import InspectionClient, build_request


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _make_ca(directory: Path, name: str) -> None:
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
        "-keyout", f"{name}.key", "-out", f"{name}.pem", cwd=directory,
    )  # fmt: skip


def _make_signed(directory: Path, name: str, ca: str, extensions: str) -> None:
    (directory / f"{name}.ext").write_text(extensions)
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
        "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=directory,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-CAcreateserial",
        "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.pem", cwd=directory,
    )  # fmt: skip


@pytest.fixture(scope="module")
def certificates(tmp_path_factory) -> Path:
    """A test CA with a server and a client certificate, and a foreign CA with its own client certificate."""
    if shutil.which("openssl") is None:
        message = "openssl not found (scripts/install_system_deps.sh installs it)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    d = tmp_path_factory.mktemp("tls")
    _make_ca(d, "line-ca")
    _make_ca(d, "foreign-ca")
    server_extensions = "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
    _make_signed(d, "server", "line-ca", server_extensions)
    _make_signed(d, "client", "line-ca", "extendedKeyUsage=clientAuth\n")
    _make_signed(d, "intruder", "foreign-ca", "extendedKeyUsage=clientAuth\n")
    return d


def _one_patch_request(product_images):
    regions, frames, vials = product_layout(1)
    return build_request(product_images[:1], regions, frames, vials, model_name=MODEL, product_id="tls-1")


def _inspect(target: str, request, certs: Path, client: str | None, trust: str = "line-ca") -> str:
    """The verdict, or the gRPC status code's name when the call failed."""
    root = (certs / f"{trust}.pem").read_bytes()
    key = (certs / f"{client}.key").read_bytes() if client else None
    chain = (certs / f"{client}.pem").read_bytes() if client else None
    with InspectionClient(target, root_certificates=root, client_key=key, client_cert=chain) as c:
        try:
            return c.inspect_request(request, timeout_s=30).verdict
        except grpc.RpcError as err:
            return err.code().name


def _inspect_plaintext(target: str, request) -> str:
    with InspectionClient(target) as c:
        try:
            return c.inspect_request(request, timeout_s=10).verdict
        except grpc.RpcError as err:
            return err.code().name


@pytest.mark.parametrize("mutual", [False, True], ids=["tls", "mutual-tls"])
def test_tls_end_to_end(server_kind, mutual, certificates, make_model_root, tmp_path, product_images):
    flags = {"tls_cert": certificates / "server.pem", "tls_key": certificates / "server.key"}
    if mutual:
        flags["tls_client_ca"] = certificates / "line-ca.pem"
    root = make_model_root(f"tls-{server_kind}-{mutual}")
    handle = start_server_of_kind(server_kind, root, tmp_path, **{k: str(v) for k, v in flags.items()})
    request = _one_patch_request(product_images)
    try:
        # A client that trusts the line CA and presents the line's client certificate is served.
        assert _inspect(handle.target, request, certificates, "client") in ("ACCEPT", "REJECT")
        # A client that does not trust the server's CA refuses the server.
        assert _inspect(handle.target, request, certificates, "client", trust="foreign-ca") == "UNAVAILABLE"
        # Plaintext is never answered by a TLS server.
        assert _inspect_plaintext(handle.target, request) == "UNAVAILABLE"
        without_certificate = _inspect(handle.target, request, certificates, None)
        foreign_certificate = _inspect(handle.target, request, certificates, "intruder")
        if mutual:
            assert without_certificate == "UNAVAILABLE"
            assert foreign_certificate == "UNAVAILABLE"
        else:
            assert without_certificate in ("ACCEPT", "REJECT")
    finally:
        handle.stop()


def _thread_nice_values(pid: int) -> dict[str, set[int]]:
    """Thread name -> nice values of the process's threads (/proc/<pid>/task/*/stat, field 19)."""
    threads: dict[str, set[int]] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            stat = (task / "stat").read_text()
        except FileNotFoundError:  # the thread ended while we looked
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "; field 19 is the 17th of these
        threads.setdefault(name, set()).add(int(fields[16]))
    return threads


def test_cc_tensorflow_threads_run_below_the_rpc_threads(make_model_root, tmp_path, product_images):
    root = make_model_root("priority")
    handle = start_server_of_kind("cc", root, tmp_path, inference_nice=7)
    try:
        with InspectionClient(handle.target) as c:
            # After one product, TensorFlow's pools exist.
            c.inspect_request(_one_patch_request(product_images), timeout_s=30)
        threads = _thread_nice_values(handle.pid)
    finally:
        handle.stop()
    base = os.getpriority(os.PRIO_PROCESS, 0)  # the server inherits this test process's nice value
    expected_low = min(19, base + 7)
    tensorflow = {name: nice for name, nice in threads.items() if name.startswith("tf_")}
    rpc = {name: nice for name, nice in threads.items() if name.startswith(("grpc", "default-executo"))}
    assert tensorflow, f"no TensorFlow threads found: {threads}"
    assert rpc, f"no gRPC threads found: {threads}"
    assert all(nice == {expected_low} for nice in tensorflow.values()), threads
    assert all(nice == {base} for nice in rpc.values()), threads
