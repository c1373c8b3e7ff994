"""TLS credentials as files, for clusters whose scheduler, workers and driver start as separate processes.

``make_cluster(security=True)`` keeps its temporary certificates in memory, which is enough when one
process starts everything (LocalCluster, dask-jobqueue). A batch job that starts ``dask scheduler`` and
``srun dask worker`` itself needs them on disk: :func:`write_tls_files` writes one temporary self-signed
certificate (as ``Security.temporary`` makes it) to a private folder, and every process loads it with
``--tls-ca-file/--tls-cert/--tls-key`` or :func:`security_from_files`. Anyone without the key cannot
connect; the folder is the job's own (mode 0700, files 0600) and is removed when the job ends.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import ClusterOptionError, InputError

__all__ = ["TLS_FILES", "resolve_security", "security_from_files", "write_tls_files"]

TLS_FILES = {"ca": "ca.pem", "cert": "cert.pem", "key": "key.pem"}


def resolve_security(security: Any) -> Any:
    """None/False → None; True → temporary TLS credentials; a Security object as is."""
    if security is None or security is False:
        return None
    from distributed.security import Security

    if security is True:
        try:
            return Security.temporary()
        except ImportError as exc:
            raise ClusterOptionError(
                "security=True makes temporary TLS certificates and needs the 'cryptography' package; "
                "install it, or pass a distributed.Security built from your own certificate files"
            ) from exc
    if not isinstance(security, Security):
        raise ClusterOptionError(f"security must be True or a distributed.Security, not {type(security).__name__}")
    return security


def write_tls_files(folder: str | os.PathLike) -> dict[str, Path]:
    """Write a fresh temporary CA, certificate and key into ``folder`` (made private); returns their paths."""
    security = resolve_security(True)  # temporary credentials: PEM text in the tls_* fields
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    texts = {"ca": security.tls_ca_file, "cert": security.tls_scheduler_cert, "key": security.tls_scheduler_key}
    paths = {}
    for role, text in texts.items():
        path = folder / TLS_FILES[role]
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(text)
        paths[role] = path
    return paths


def security_from_files(folder: str | os.PathLike):
    """A ``distributed.Security`` for every role from the files :func:`write_tls_files` wrote.

    Raises
    ------
    InputError
        A file is missing.
    """
    from distributed.security import Security

    folder = Path(folder)
    paths = {role: folder / name for role, name in TLS_FILES.items()}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise InputError(f"{folder}: TLS files missing ({', '.join(missing)}); write them with "
                         "`deepcr-dask tls-files DIR`")
    ca, cert, key = (str(paths[r]) for r in ("ca", "cert", "key"))
    return Security(tls_ca_file=ca, tls_client_cert=cert, tls_client_key=key, tls_scheduler_cert=cert,
                    tls_scheduler_key=key, tls_worker_cert=cert, tls_worker_key=key, require_encryption=True)
