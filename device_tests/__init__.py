"""Device benchmark harnesses: host, Android over adb, Apple M4 Macs, device farms
(installed as `edgevlm.device_tests`)."""
