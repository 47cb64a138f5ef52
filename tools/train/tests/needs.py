"""What a test module needs installed: `missing("torch", ...)` names the modules absent, so
the module's tests skip; with LATENTD_REQUIRE_EXPORT_TOOLS=1 (scripts/test.sh, CI) an absent
module is an error instead, so a machine that should have them cannot pass by skipping."""

import importlib.util
import os


def missing(*modules: str) -> list[str]:
    absent = [m for m in modules if importlib.util.find_spec(m) is None]
    if absent and os.environ.get("LATENTD_REQUIRE_EXPORT_TOOLS") == "1":
        raise RuntimeError(f"LATENTD_REQUIRE_EXPORT_TOOLS=1 but {', '.join(absent)} missing")
    return absent
