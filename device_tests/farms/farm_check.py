"""The result check (edgevlm_farm_check.py) as the wheel a Device Farm Python test package needs."""

from __future__ import annotations

import base64
import hashlib
import io
import zipfile
from pathlib import Path

NAME, VERSION = "edgevlm_farm_check", "1.0"
SOURCE = Path(__file__).with_name("edgevlm_farm_check.py")
TEST_FILE = '''"""Device Farm's package layout wants a tests/ folder: the same check, runnable by pytest or python."""
import os
import sys

from edgevlm_farm_check import check, main


def test_result():
    problem = check(os.path.join(os.environ["DEVICEFARM_LOG_DIR"], "bench.json"))
    assert problem is None, problem


if __name__ == "__main__":
    sys.exit(main())
'''


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def wheel() -> tuple[str, bytes]:
    """(file name, bytes) of a pure-Python wheel (PEP 427) holding the one module."""
    dist = f"{NAME}-{VERSION}.dist-info"
    files = {
        f"{NAME}.py": SOURCE.read_bytes(),
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {NAME}\nVersion: {VERSION}\n".encode(),
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: edgevlm\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "\n".join([*(_record_line(n, d) for n, d in files.items()), f"{dist}/RECORD,,"]) + "\n"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in [*files.items(), (f"{dist}/RECORD", record.encode())]:
            z.writestr(zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0)), data)  # fixed stamps: same bytes each time
    return f"{NAME}-{VERSION}-py3-none-any.whl", buf.getvalue()
