"""Store size limits a bundle is measured against, and what to do past each one.

Sizes here are uncompressed bytes. Google Play's limits are on the compressed download, but model
weights (quantized tensors, a QNN context) compress little, so the uncompressed size is the
honest upper bound to warn on. A warning never fails the command: the app decides how it ships.
"""

from __future__ import annotations

from dataclasses import dataclass

MB, GB = 1000 ** 2, 1000 ** 3
MODEL_PARTS = ("vision", "decoder", "tokenizer", "manifest")  # what lands in assets / resources


@dataclass(frozen=True)
class Limit:
    name: str
    bytes: int
    measure: str  # "models": all model files; "largest part": the biggest of vision/decoder; "total"
    source: str
    advice: str


# Google Play Console Help, "Optimize your app's size and stay within Google Play app size limits"
# (support.google.com/googleplay/android-developer/answer/9859372): base module 200 MB, each asset
# pack 1.5 GB, modules + install-time asset packs 4 GB, all on the compressed download.
PLAY = "Google Play Console Help, app size limits (answer 9859372)"
ANDROID_LIMITS = (
    Limit("Google Play base module download", 200 * MB, "models", PLAY,
          "the models would sit in the base module's assets: move app/src/main/assets/edgevlm into a Play Asset "
          "Delivery asset pack (install-time or fast-follow) and open the model from the pack's path"),
    Limit("Google Play asset pack (each)", int(1.5 * GB), "largest part", PLAY,
          "one model part alone exceeds an asset pack: export a smaller variant (w4a16 vision, a smaller "
          "LLM) or download it from your own server on first launch"),
    Limit("Google Play modules + install-time asset packs", 4 * GB, "total", PLAY,
          "deliver the models in fast-follow / on-demand asset packs (their own 4 GB) or from your own server"),
)
# App Store Connect Help, "Maximum build file sizes" (developer.apple.com/help/app-store-connect/
# reference/maximum-build-file-sizes): total uncompressed app size under 4 GB. Cellular: since iOS 13
# the App Store asks before a download over 200 MB on cellular (Apple's 2019 change of the 150 MB cap).
APP_STORE_SIZES = "App Store Connect Help, Maximum build file sizes"
APP_STORE_CELLULAR = "App Store cellular download limit (200 MB, iOS 13 and later: users are asked)"
IOS_LIMITS = (
    Limit("App Store cellular download", 200 * MB, "total", APP_STORE_CELLULAR,
          "users on cellular are asked before downloading: ship the models as Background Assets / Apple-hosted "
          "asset packs downloaded after install, or accept Wi-Fi installs"),
    Limit("App Store app size (uncompressed)", 4 * GB, "total", APP_STORE_SIZES,
          "App Store Connect refuses the build: host the models with Background Assets or on-demand resources"),
)
LIMITS = {"android": ANDROID_LIMITS, "ios": IOS_LIMITS}


def measured(sizes: dict[str, int], measure: str) -> int:
    if measure == "models":
        return sum(sizes.get(p, 0) for p in MODEL_PARTS)
    if measure == "largest part":
        return max(sizes.get("vision", 0), sizes.get("decoder", 0))
    return sum(sizes.values())


def budget_warnings(sizes: dict[str, int], limits: tuple[Limit, ...]) -> list[dict]:
    """One warning per limit the sizes (bytes per part) exceed: the limit, what was measured, where
    the limit comes from and what to do."""
    warnings = []
    for limit in limits:
        value = measured(sizes, limit.measure)
        if value > limit.bytes:
            warnings.append({"limit": limit.name, "limit_bytes": limit.bytes, "measured": limit.measure,
                             "measured_bytes": value, "source": limit.source, "advice": limit.advice})
    return warnings
